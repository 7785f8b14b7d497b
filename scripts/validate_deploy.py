#!/usr/bin/env python3
"""Validates mp3conv's deployment as a cluster would, without a cluster.

- knative/ manifests: custom resources against the upstream CRD schemas in tests/data/crds/
  (unknown fields are errors except where the CRD preserves them), built-in kinds against the
  Kubernetes 1.33 schemas of the kubernetes-validate package (strict);
- spin.toml against Spin's published manifest schema (version 2);
- the cross-references: every secret and ConfigMap key used exists, the event source's sink is a
  Service defined here and a route of spin.toml, queue names and delivery settings match the
  worker and the local bridge (eventing.toml), images are the ones `make image` and
  `make app-image` build, spin.toml's routes cover openapi.yaml's paths, every function gets
  every variable spin.toml requires, selectors select something.

Usage: validate_deploy.py [ROOT]   (ROOT: a checkout; default: this script's repository)
Prints one line per problem, naming the file and the field; exits 1 when there is any.
"""

import json
import pathlib
import re
import sys
import tomllib

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33"
# Custom resources: (apiVersion, kind) -> the CRD file that defines them.
CRDS = {
    ("serving.knative.dev/v1", "Service"): "knative-serving-service.yaml",
    ("sources.knative.dev/v1alpha1", "RabbitmqSource"): "eventing-rabbitmq-rabbitmqsource.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentications.yaml",
    ("core.spinkube.dev/v1alpha1", "SpinApp"): "spinkube-spinapps.yaml",
}


class Report:
    def __init__(self, root):
        self.root = root
        self.problems = []

    def add(self, file, where, message):
        name = file.relative_to(self.root) if isinstance(file, pathlib.Path) else file
        self.problems.append(f"{name}: {where}: {message}")


def path_text(path):
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def strict_schema(schema):
    """An OpenAPI v3 CRD schema as JSON Schema in which unknown fields are errors, as the API
    server's strict field validation makes them, except under preserve-unknown-fields."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict_schema(value) for key, value in schema.items()
           if not key.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    if schema.get("nullable"):
        out.pop("nullable")
        if "type" in out:
            out["type"] = [out["type"], "null"]
    return out


def crd_schema(crd_dir, api_version, kind):
    crd = yaml.safe_load((crd_dir / CRDS[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema = strict_schema(served["schema"]["openAPIV3Schema"])
            # The API server handles these itself; some CRDs leave them out of the schema.
            schema.setdefault("properties", {}).update({
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
            })
            return schema
    raise KeyError(f"{kind} {api_version} is not served by {CRDS[(api_version, kind)]}")


def load_documents(report, root):
    documents = []
    for file in sorted((root / "knative").rglob("*.yaml")):
        # Prometheus rules and a Grafana dashboard, not Kubernetes objects: checked by
        # native-worker/tests/monitoring.rs.
        if "monitoring" in file.relative_to(root / "knative").parts:
            continue
        try:
            loaded = list(yaml.safe_load_all(file.read_text()))
        except yaml.YAMLError as err:
            report.add(file, "(file)", f"is not YAML: {err}")
            continue
        for document in loaded:
            if document is not None:
                documents.append((file, document))
    return documents


def name_of(document):
    return f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"


def validate_schemas(report, root, documents):
    crd_dir = root / "tests" / "data" / "crds"
    for file, document in documents:
        api_version, kind = document.get("apiVersion"), document.get("kind")
        if kind == "Kustomization":
            continue
        if (api_version, kind) in CRDS:
            validator = jsonschema.Draft7Validator(crd_schema(crd_dir, api_version, kind))
            for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path)):
                report.add(file, f"{name_of(document)}: {path_text(error.path)}", error.message)
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            report.add(file, f"{name_of(document)}: {path_text(error.path)}", error.message)
        except kubernetes_validate.SchemaNotFoundError:
            report.add(file, name_of(document), f"unknown kind {kind} ({api_version})")


def validate_spin_manifest(report, root):
    schema = json.loads((root / "tests" / "data" / "crds" / "spin-manifest-v2.schema.json").read_text())
    manifest_file = root / "spin.toml"
    manifest = tomllib.loads(manifest_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(manifest), key=lambda e: list(e.path)):
        report.add(manifest_file, path_text(error.path), error.message)
    return manifest


def env_file_keys(path):
    keys = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            keys.add(line.split("=", 1)[0].strip())
    return keys


def walk(value, path=()):
    yield path, value
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from walk(inner, path + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from walk(inner, path + (index,))


def check_references(report, root, documents, manifest):
    knative = root / "knative"
    kustomization_file = knative / "kustomization.yaml"
    kustomization = yaml.safe_load(kustomization_file.read_text())

    # Every manifest is applied, and everything applied exists.
    listed = set(kustomization.get("resources", []))
    for resource in sorted(listed):
        if not (knative / resource).exists():
            report.add(kustomization_file, "resources", f"`{resource}` does not exist")
    for file in sorted(knative.glob("*.yaml")):
        if file.name != "kustomization.yaml" and file.name not in listed:
            report.add(kustomization_file, "resources", f"`{file.name}` is not listed")

    # Keys each secret and ConfigMap has. Generated secrets are described by their
    # `.example` files (the real ones are never committed).
    keys = {}
    for generator in kustomization.get("secretGenerator", []):
        found = set()
        for env in generator.get("envs", []):
            example = knative / f"{env}.example"
            source = knative / env if (knative / env).exists() else example
            if not source.exists():
                report.add(kustomization_file, f"secretGenerator {generator['name']}",
                           f"neither {env} nor {env}.example exists")
                continue
            found |= env_file_keys(source)
        keys[("Secret", generator["name"])] = found
    for _, document in documents:
        if document.get("kind") in ("ConfigMap", "Secret"):
            data = {**(document.get("data") or {}), **(document.get("stringData") or {})}
            keys[(document["kind"], document["metadata"]["name"])] = set(data)

    def check_key(file, document, path, kind, name, key):
        where = f"{name_of(document)}: {path_text(path)}"
        if (kind, name) not in keys:
            report.add(file, where, f"{kind.lower()} `{name}` is not defined here")
        elif key is not None and key not in keys[(kind, name)]:
            report.add(file, where, f"`{key}` is not a key of {kind.lower()} `{name}`")

    by_kind = {}
    for file, document in documents:
        by_kind.setdefault(document.get("kind"), []).append((file, document))
        for path, value in walk(document):
            if not isinstance(value, dict):
                continue
            if isinstance(value.get("secretKeyRef"), dict):
                ref = value["secretKeyRef"]
                check_key(file, document, path + ("secretKeyRef", "key"), "Secret", ref.get("name"), ref.get("key"))
            if isinstance(value.get("configMapKeyRef"), dict):
                ref = value["configMapKeyRef"]
                check_key(file, document, path + ("configMapKeyRef", "key"), "ConfigMap", ref.get("name"), ref.get("key"))
        if document.get("kind") == "TriggerAuthentication":
            for index, ref in enumerate(document["spec"].get("secretTargetRef", [])):
                check_key(file, document, ("spec", "secretTargetRef", index, "key"), "Secret", ref.get("name"), ref.get("key"))
        if document.get("kind") == "RabbitmqSource":
            secret = document["spec"]["rabbitmqClusterReference"].get("connectionSecret", {}).get("name")
            check_key(file, document, ("spec", "rabbitmqClusterReference", "connectionSecret", "name"), "Secret", secret, "uri")

    def names(kind):
        return {document["metadata"]["name"]: document for _, document in by_kind.get(kind, [])}

    config = next((d.get("data", {}) for _, d in by_kind.get("ConfigMap", [])
                   if d["metadata"]["name"] == "mp3conv-config"), {})
    prefix = config.get("queue-prefix", "")
    routes = [trigger["route"] for trigger in manifest.get("trigger", {}).get("http", [])
              if isinstance(trigger.get("route"), str)]

    # The event source: its sink, its queue, and the same settings as the local bridge.
    bridge_file = root / "eventing.toml"
    bridge = tomllib.loads(bridge_file.read_text())["source"]
    for file, source in by_kind.get("RabbitmqSource", []):
        spec = source["spec"]
        where = name_of(source)
        sink = spec.get("sink", {})
        ref = sink.get("ref", {})
        if ref.get("kind") == "Service" and ref.get("name") not in names("Service"):
            report.add(file, f"{where}: spec.sink.ref.name", f"no Service `{ref.get('name')}` is defined")
        if sink.get("uri") not in routes:
            report.add(file, f"{where}: spec.sink.uri", f"`{sink.get('uri')}` is not a route of spin.toml")
        queue = spec["rabbitmqResourcesConfig"].get("queueName")
        if queue != prefix + "mp3":
            report.add(file, f"{where}: spec.rabbitmqResourcesConfig.queueName",
                       f"`{queue}` is not the worker's announcement queue `{prefix}mp3`")
        local = next((b for b in bridge if b.get("name") == source["metadata"]["name"]), None)
        if local is None:
            report.add(bridge_file, "source", f"no source named `{source['metadata']['name']}` mirrors {where}")
            continue
        pairs = [
            ("rabbitmqResourcesConfig.queueName", spec["rabbitmqResourcesConfig"].get("queueName"),
             local["rabbitmqResourcesConfig"].get("queueName")),
            ("rabbitmqResourcesConfig.parallelism", spec["rabbitmqResourcesConfig"].get("parallelism"),
             local["rabbitmqResourcesConfig"].get("parallelism")),
            ("delivery.retry", spec.get("delivery", {}).get("retry"), local.get("delivery", {}).get("retry")),
            ("delivery.backoffPolicy", spec.get("delivery", {}).get("backoffPolicy"),
             local.get("delivery", {}).get("backoffPolicy")),
            ("delivery.backoffDelay", spec.get("delivery", {}).get("backoffDelay"),
             local.get("delivery", {}).get("backoffDelay")),
            ("sink.uri", sink.get("uri"), local.get("sink", {}).get("uri")),
        ]
        for field, cluster, here in pairs:
            if cluster != here:
                report.add(bridge_file, f"source {local['name']}: {field}",
                           f"`{here}` differs from {file.relative_to(root)}'s `{cluster}`")

    # The converters scale on the worker's `video` queue.
    deployments = names("Deployment")
    for file, scaled in by_kind.get("ScaledObject", []):
        target = scaled["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            report.add(file, f"{name_of(scaled)}: spec.scaleTargetRef.name", f"no Deployment `{target}`")
        for index, trigger in enumerate(scaled["spec"].get("triggers", [])):
            queue = trigger.get("metadata", {}).get("queueName")
            if trigger.get("type") == "rabbitmq" and queue != prefix + "video":
                report.add(file, f"{name_of(scaled)}: spec.triggers[{index}].metadata.queueName",
                           f"`{queue}` is not the worker's job queue `{prefix}video`")
            # Scaling on ready messages alone would scale away a converter busy with the last
            # jobs: their messages are unacknowledged, not ready. Only the management API
            # (`protocol: http`) counts them.
            metadata = trigger.get("metadata", {})
            if trigger.get("type") == "rabbitmq" and (
                metadata.get("protocol") != "http"
                or str(metadata.get("excludeUnacknowledged", "false")).lower() == "true"
            ):
                report.add(file, f"{name_of(scaled)}: spec.triggers[{index}].metadata.protocol",
                           "must be `http` counting unacknowledged messages: ready messages alone "
                           "scale away converters busy with the last jobs")
            auth = trigger.get("authenticationRef", {}).get("name")
            if auth and auth not in names("TriggerAuthentication"):
                report.add(file, f"{name_of(scaled)}: spec.triggers[{index}].authenticationRef.name",
                           f"no TriggerAuthentication `{auth}`")

    # Selectors select.
    pod_labels = [(d["metadata"]["name"], d["spec"]["template"]["metadata"].get("labels", {}))
                  for d in deployments.values()]

    def selects(selector):
        return any(all(labels.get(k) == v for k, v in selector.items()) for _, labels in pod_labels)

    for file, service in by_kind.get("Service", []):
        selector = service.get("spec", {}).get("selector")
        if service.get("apiVersion") == "v1" and selector and not selects(selector):
            report.add(file, f"{name_of(service)}: spec.selector", "selects no Deployment's pods")
    for file, policy in by_kind.get("NetworkPolicy", []):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if not selects(selector):
            report.add(file, f"{name_of(policy)}: spec.podSelector", "selects no Deployment's pods")

    # Images: what `make image` and `make app-image` build, at the workspace's version.
    makefile = (root / "Makefile").read_text()
    version = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    images = {}
    for variable in ("WORKER_IMAGE", "APP_IMAGE"):
        match = re.search(rf"^{variable} := (\S+)$", makefile, re.M)
        if match:
            images[variable] = f"{match.group(1)}:{version}"
        else:
            report.add(root / "Makefile", variable, "is not defined")
    if "ENTRYPOINT [\"mp3conv-worker\"]" not in (root / "Dockerfile").read_text():
        report.add(root / "Dockerfile", "ENTRYPOINT", "the worker image must run mp3conv-worker")
    for file, document in documents:
        for path, value in walk(document):
            if path and path[-1] == "image" and isinstance(value, str):
                wasm = document.get("kind") == "SpinApp" or "runtimeClassName" in str(document)
                expected = images.get("APP_IMAGE" if wasm else "WORKER_IMAGE")
                if value != expected:
                    report.add(file, f"{name_of(document)}: {path_text(path)}",
                               f"`{value}` is not the image the Makefile builds (`{expected}`)")

    # Every function deployment gets every variable spin.toml requires, and no unknown ones.
    declared = manifest.get("variables", {})
    required = {name for name, spec in declared.items() if spec.get("required")}
    functions = [(f, d) for f, d in by_kind.get("Service", []) if d.get("apiVersion") == "serving.knative.dev/v1"]
    for file, service in functions:
        env = [e for c in service["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])]
        given = set()
        for index, variable in enumerate(env):
            name = variable["name"]
            if name.startswith("SPIN_VARIABLE_"):
                lower = name[len("SPIN_VARIABLE_"):].lower()
                given.add(lower)
                if lower not in declared:
                    report.add(file, f"{name_of(service)}: spec.template.spec.containers[0].env[{index}]",
                               f"`{name}` sets no variable of spin.toml")
        for missing in sorted(required - given):
            report.add(file, name_of(service), f"required variable `{missing}` of spin.toml is not set")
    for file, app in by_kind.get("SpinApp", []):
        given = {v["name"] for v in app["spec"].get("variables", [])}
        for index, name in enumerate(v["name"] for v in app["spec"].get("variables", [])):
            if name not in declared:
                report.add(file, f"{name_of(app)}: spec.variables[{index}].name", f"`{name}` is not a variable of spin.toml")
        for missing in sorted(required - given):
            report.add(file, name_of(app), f"required variable `{missing}` of spin.toml is not set")

    # spin.toml's routes and openapi.yaml's paths describe the same API.
    openapi_file = root / "openapi.yaml"
    paths = list(yaml.safe_load(openapi_file.read_text())["paths"])

    def matches(route, path):
        if route.endswith("/..."):
            return path == route[:-4] or path.startswith(route[:-4] + "/") or route == "/..."
        return route == path

    for path in paths:
        if not any(matches(route, path) for route in routes):
            report.add(openapi_file, f"paths.{path}", "no route of spin.toml serves it")
    # The web app's pages and files (component `web`) are not API operations: only its `/`
    # (which also answers the service description as JSON) is documented.
    api_routes = [trigger["route"] for trigger in manifest.get("trigger", {}).get("http", [])
                  if isinstance(trigger.get("route"), str) and trigger.get("component") != "web"]
    for route in api_routes:
        if not any(matches(route, path) for path in paths):
            report.add(root / "spin.toml", f"trigger.http route `{route}`", "openapi.yaml documents nothing under it")


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent).resolve()
    report = Report(root)
    documents = load_documents(report, root)
    validate_schemas(report, root, documents)
    manifest = validate_spin_manifest(report, root)
    check_references(report, root, documents, manifest)
    for problem in report.problems:
        print(problem)
    kinds = sorted({name_of(d).split("/")[0] for _, d in documents})
    print(f"checked {len(documents)} manifests ({', '.join(kinds)}), spin.toml and their references: "
          f"{len(report.problems)} problem(s)", file=sys.stderr)
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
