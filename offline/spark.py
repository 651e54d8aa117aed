"""One place that builds the SparkSession for offline jobs, from settings.

Offline-only: the request path never imports this module, so pyspark is imported at the
top. Importing it starts nothing; the JVM starts when :func:`spark_session` is called.
"""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from shared.settings import Settings

DEFAULT_SHUFFLE_PARTITIONS = 8
DEFAULT_DRIVER_MEMORY = "2g"


def spark_session(
    settings: Settings,
    app_name: str,
    *,
    shuffle_partitions: int = DEFAULT_SHUFFLE_PARTITIONS,
    driver_memory: str = DEFAULT_DRIVER_MEMORY,
) -> SparkSession:
    """A SparkSession on ``settings.spark_master`` (``local[*]``, ``spark://host:7077``, ...).

    Tuned for the sizes this project runs on one machine: Spark's 200 default shuffle
    partitions would turn a 100K-row job into hundreds of tiny tasks. The UI is off (no
    port to collide with a second session or a test), times are UTC (timestamps are epoch
    seconds and must not move with the host's zone), and Arrow moves pandas frames.

    ``driver_memory`` only takes effect when this call starts the JVM; an existing session
    with the same master is returned as it is (``getOrCreate``).
    """
    builder = (
        SparkSession.builder.master(settings.spark_master)
        .appName(app_name)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(shuffle_partitions))
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
    )
    if settings.spark_master.startswith("local"):
        # Python workers must be this interpreter (with pandas, pyarrow and this project);
        # otherwise Spark starts whatever `python3` is on PATH. On a cluster the workers'
        # interpreter is the cluster's business (PYSPARK_PYTHON there).
        # PySpark reads the variable when the context starts, not the conf key, in local mode.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
    return builder.getOrCreate()
