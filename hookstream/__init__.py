"""hookstream: durable CryptoMate webhook ingestion and event processing on Apache Kafka."""

__version__ = "0.1.0"
