"""Storage roles on Apache Cassandra: candidates and event history."""
