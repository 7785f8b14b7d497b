# The two commands the README opens with: `make up` runs the system, `make test` runs every test.
CARGO ?= cargo
FUNCTIONS := -p auth -p gateway
TEST_COMPONENTS := -p probe

.PHONY: up test build functions native bench fmt lint

up: build
	./target/release/mp3conv up

test:
	scripts/test.sh

build: functions native

functions:
	scripts/toolchain.sh
	$(CARGO) build --release --target wasm32-wasip2 $(FUNCTIONS)

native:
	$(CARGO) build --release -p mp3conv

bench:
	scripts/bench.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
