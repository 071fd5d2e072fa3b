.PHONY: demo etl-cloud dataflow360 test lint bench format servers-up servers-down

demo:  ## install and run the demo project on embedded defaults
	./scripts/demo

etl-cloud:  ## seed 003 end to end: REST API, PostgreSQL and files -> S3 lake -> SQL models -> PostgreSQL warehouse
	python3 examples/etl-cloud/run.py

dataflow360:  ## seed 004 end to end: Faker events -> Kafka -> streaming objects -> Spark -> star schema in PostgreSQL
	python3 examples/dataflow360/run.py

test:  ## install and run the whole test suite
	./scripts/test

lint:  ## ruff and mypy --strict
	./scripts/lint

format:
	python3 -m ruff format src tests bench examples/etl-cloud examples/dataflow360
	python3 -m ruff check --fix src tests bench examples/etl-cloud examples/dataflow360

bench:  ## benchmarks against peers (Dagster, Prefect, raw COPY)
	./scripts/bench

servers-up:  ## start the throwaway PostgreSQL, MariaDB, Kafka, Redis and S3 (versitygw) used by the tests
	./scripts/servers/postgres.sh start
	./scripts/servers/mariadb.sh start
	./scripts/servers/kafka.sh start
	./scripts/servers/redis.sh start
	./scripts/servers/s3.sh start

servers-down:
	./scripts/servers/postgres.sh stop
	./scripts/servers/mariadb.sh stop
	./scripts/servers/kafka.sh stop
	./scripts/servers/redis.sh stop
	./scripts/servers/s3.sh stop
