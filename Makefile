# The two commands the README opens with: `make up` runs the system, `make test` runs every test.
CARGO ?= cargo
FUNCTIONS := -p auth -p gateway -p notifier -p web
TEST_COMPONENTS := -p probe

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
WORKER_IMAGE := ghcr.io/mp3conv/mp3conv-worker
APP_IMAGE := ghcr.io/mp3conv/mp3conv-app

.PHONY: up test build functions native bench fmt lint image app-image

# Links to video pages need yt-dlp: the pinned one the tests use, unless one is named.
up: build
	MP3CONV_WORKER__FETCH__PAGES__YTDLP="$${MP3CONV_WORKER__FETCH__PAGES__YTDLP:-$$(scripts/services.sh ytdlp || echo yt-dlp)}" \
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

# The worker's container image (docker), and the Spin app as an OCI artifact (the `spin` CLI),
# under the names knative/ uses.
image:
	docker build -t $(WORKER_IMAGE):$(VERSION) .

app-image: functions
	spin registry push $(APP_IMAGE):$(VERSION)
