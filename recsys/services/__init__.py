"""Local Apache Kafka, Apache Cassandra and Redis for development and tests, without Docker.

`recsys services up|down|status` (see ``cli.py``) fetches the JVM servers' jars with Maven
into a cache outside the clone, starts each server detached with its data, log and pid file
under one state folder (``var/services`` by default), and checks readiness over each
server's own protocol.
"""
