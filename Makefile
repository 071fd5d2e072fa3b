.PHONY: demo test lint bench format servers-up servers-down

demo:  ## install and run the demo project on embedded defaults
	./scripts/demo

test:  ## install and run the whole test suite
	./scripts/test

lint:  ## ruff and mypy --strict
	./scripts/lint

format:
	python3 -m ruff format src tests bench
	python3 -m ruff check --fix src tests bench

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
