"""What a working Forgeline deployment on Kubernetes needs, as checks over its manifests.

Each rule takes every object under deploy/kubernetes and returns its problems, one line
each naming the object; an empty list means the rule holds. The schemas say a manifest is
well formed; these say it would work: every service deployed where the others look for it,
resources requested, state on volumes, secrets from Secrets, probes that survive TLS, a
Ray cluster KubeRay can scale and that only Forgeline's job services reach.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from forgeline.common.settings import (
    DEFAULT_PORTS,
    ENVIRONMENT,
    HTTP_SERVICES,
    METRICS_PORT_OFFSET,
    ServiceName,
)
from tests.deploy.manifests import (
    Resource,
    containers,
    env_names,
    env_value,
    find,
    mounts,
    pod_templates,
)

SETTINGS = frozenset(v.name for v in ENVIRONMENT)
JOB_SERVICES = frozenset({ServiceName.TRAINER, ServiceName.QUANTIZER, ServiceName.EVALUATOR})
STATEFUL = JOB_SERVICES | {ServiceName.REGISTRY}
NAME_LABEL = "app.kubernetes.io/name"
RAY_CLUSTER_LABEL = "ray.io/cluster"
RAY_CONTROL_PORTS = frozenset({6379, 8265, 10001})  # GCS, dashboard, client
RAY_CLIENT_PORT = 10001
GPU = "nvidia.com/gpu"
TLS_SWITCH = "${FORGELINE_TLS_CERT:+--tls}"

Rule = Callable[[list[Resource]], list[str]]


def served(container: Resource) -> ServiceName | None:
    """The service a container runs (`forgeline serve NAME`), or None."""
    args = container.get("args", [])
    return ServiceName(args[1]) if len(args) == 2 and args[0] == "serve" else None


def deployment_of(objects: list[Resource], service: ServiceName) -> Resource | None:
    """The Deployment whose container runs `service`, or None."""
    for deployment in find(objects, "Deployment"):
        if any(served(c) == service for _, c, _ in containers(deployment)):
            return deployment
    return None


def config(objects: list[Resource]) -> dict[str, str]:
    """The data of the `forgeline` ConfigMap every service reads."""
    found = find(objects, "ConfigMap", "forgeline")
    return found[0]["data"] if found else {}


def services_deployed(objects: list[Resource]) -> list[str]:
    """Every service runs in exactly one Deployment, with a Service of its own name."""
    problems = []
    for service in ServiceName:
        running = [
            d["metadata"]["name"]
            for d in find(objects, "Deployment")
            if any(served(c) == service for _, c, _ in containers(d))
        ]
        if len(running) != 1:
            problems.append(f"{service}: runs in {len(running)} Deployments {running}")
        if not find(objects, "Service", service.value):
            problems.append(f"{service}: no Service named {service.value}")
    return problems


def resource_requests(objects: list[Resource]) -> list[str]:
    """Every container requests CPU and memory; a GPU is requested as much as limited."""
    problems = []
    for obj in find(objects, "Deployment") + find(objects, "RayCluster"):
        for where, container, _ in containers(obj):
            resources = container.get("resources", {})
            requests, limits = resources.get("requests", {}), resources.get("limits", {})
            problems += [f"{where}: no {r} request" for r in ("cpu", "memory") if r not in requests]
            if "memory" not in limits:
                problems.append(f"{where}: no memory limit")
            if requests.get(GPU) != limits.get(GPU):
                problems.append(f"{where}: {GPU} requests and limits differ")
    for cluster in find(objects, "RayCluster"):
        if cluster["spec"].get("enableInTreeAutoscaling"):
            requests = cluster["spec"].get("autoscalerOptions", {}).get("resources", {})
            if not {"cpu", "memory"} <= set(requests.get("requests", {})):
                problems.append(f"RayCluster {cluster['metadata']['name']}: autoscaler requests")
    return problems


def single_gpu_recreate(objects: list[Resource]) -> list[str]:
    """A Deployment on GPUs is replaced, not rolled: its new pod would wait for a free GPU."""
    return [
        f"Deployment {deployment['metadata']['name']}: not Recreate"
        for deployment in find(objects, "Deployment")
        if _requests_gpus(deployment)
        and deployment["spec"].get("strategy", {}).get("type") != "Recreate"
    ]


def _requests_gpus(deployment: Resource) -> bool:
    return any(
        GPU in c.get("resources", {}).get("requests", {}) for _, c, _ in containers(deployment)
    )


def persistent_homes(objects: list[Resource]) -> list[str]:
    """The registry and the job services keep their home on a claim, one pod at a time."""
    problems = []
    home = config(objects).get("FORGELINE_HOME", "")
    for service in sorted(STATEFUL):
        deployment = deployment_of(objects, service)
        if deployment is None:
            continue  # services_deployed says so
        name = deployment["metadata"]["name"]
        for where, container, spec in containers(deployment):
            if "persistentVolumeClaim" not in mounts(container, spec).get(home, {}):
                problems.append(f"{where}: FORGELINE_HOME ({home!r}) is not on a claim")
        if deployment["spec"].get("strategy", {}).get("type") != "Recreate":
            problems.append(f"Deployment {name}: two pods would share its home; use Recreate")
        if deployment["spec"].get("replicas", 1) != 1:
            problems.append(f"Deployment {name}: one replica owns the home")
    return problems


def setting_names(objects: list[Resource]) -> list[str]:
    """Every FORGELINE_* variable set is a setting Forgeline reads (no typo goes unread)."""
    names = [("ConfigMap forgeline", n) for n in config(objects)]
    for obj in find(objects, "Deployment") + find(objects, "RayCluster"):
        names += [(where, n) for where, c, _ in containers(obj) for n in env_names(c)]
    return [
        f"{where}: {name} is not a Forgeline setting (see `forgeline env`)"
        for where, name in names
        if name.startswith("FORGELINE_") and name not in SETTINGS
    ]


def addresses_match_services(objects: list[Resource]) -> list[str]:
    """Each FORGELINE_<SERVICE>_ADDRESS names a Service that reaches that service's pods."""
    problems = []
    data = config(objects)
    for service in ServiceName:
        if service in HTTP_SERVICES:
            continue  # nothing calls the gateway or the console by a setting
        key = f"FORGELINE_{service.name}_ADDRESS"
        host, _, port = data.get(key, "").rpartition(":")
        found = find(objects, "Service", host)
        deployment = deployment_of(objects, service)
        if not found or deployment is None:
            problems.append(f"{key}={data.get(key)!r}: no Service {host!r} for {service}")
            continue
        ports = [p for p in found[0]["spec"]["ports"] if str(p["port"]) == port]
        pod = deployment["spec"]["template"]
        if not ports:
            problems.append(f"{key}: Service {host} has no port {port}")
        elif _target_port(pod, ports[0]) != DEFAULT_PORTS[service]:
            problems.append(f"{key}: Service {host} port {port} does not reach {service}'s port")
        if not selects(found[0]["spec"]["selector"], pod["metadata"].get("labels", {})):
            problems.append(f"{key}: Service {host} does not select {service}'s pods")
    return problems


def _target_port(pod: Resource, service_port: Resource) -> int | None:
    target = service_port.get("targetPort", service_port["port"])
    for container in pod["spec"]["containers"]:
        for port in container.get("ports", []):
            if target in (port["containerPort"], port.get("name")):
                return port["containerPort"]
    return None


def selects(selector: Resource, labels: dict[str, str]) -> bool:
    """Whether a label selector (plain map or matchLabels/matchExpressions) selects labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if not {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]:
            return False
    return True


def secrets(objects: list[Resource]) -> list[str]:
    """The token comes from a Secret in every service, the gateway's keys from a Secret file."""
    problems = []
    for deployment in find(objects, "Deployment"):
        for where, container, spec in containers(deployment):
            if served(container) is None:
                continue  # not a Forgeline service (the gateway's Redis)
            token = env_value(container, "FORGELINE_TOKEN")
            if token is None or "secretKeyRef" not in token.get("valueFrom", {}):
                problems.append(f"{where}: FORGELINE_TOKEN is not from a Secret")
            if env_value(container, "FORGELINE_GATEWAY_API_KEYS") is not None:
                problems.append(f"{where}: keys in FORGELINE_GATEWAY_API_KEYS, not a keys file")
            if served(container) is ServiceName.GATEWAY:
                problems += _keys_file_problems(where, container, spec)
    return problems


def _keys_file_problems(where: str, container: Resource, spec: Resource) -> list[str]:
    entry = env_value(container, "FORGELINE_GATEWAY_KEYS_FILE")
    path = entry.get("value", "") if entry else ""
    for mount_path, volume in mounts(container, spec).items():
        if path.startswith(mount_path.rstrip("/") + "/") and "secret" in volume:
            if volume["secret"].get("optional"):
                return [f"{where}: the keys Secret is optional (the gateway would run open)"]
            return []
    return [f"{where}: FORGELINE_GATEWAY_KEYS_FILE ({path!r}) is not in a Secret volume"]


def probes(objects: list[Resource]) -> list[str]:
    """Every service is probed, in ways that work with TLS on (kubelet's gRPC and HTTP
    probes do not verify, or speak, the services' TLS): `forgeline health` on the service's
    own port with --tls when it has a certificate, or a plain TCP connect."""
    problems = []
    for deployment in find(objects, "Deployment"):
        for where, container, _ in containers(deployment):
            ports = {p["containerPort"] for p in container.get("ports", [])}
            names = {p.get("name") for p in container.get("ports", [])}
            for kind in ("readinessProbe", "livenessProbe"):
                if kind not in container:
                    problems.append(f"{where}: no {kind}")
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(kind)
                if probe is None:
                    continue
                if "grpc" in probe or "httpGet" in probe:
                    problems.append(f"{where}: {kind} fails once TLS is on; use an exec probe")
                if "tcpSocket" in probe and probe["tcpSocket"]["port"] not in ports | names:
                    problems.append(f"{where}: {kind} connects to a port it does not open")
                command = " ".join(probe.get("exec", {}).get("command", []))
                if "forgeline health" in command:
                    if not any(f"localhost:{p}" in command for p in ports):
                        problems.append(f"{where}: {kind} asks another port than its own")
                    if TLS_SWITCH not in command:
                        problems.append(f"{where}: {kind} does not switch to TLS")
    return problems


def ray_cluster(objects: list[Resource]) -> list[str]:
    """KubeRay starts the nodes (no command of ours), the head does no work, scaling is the
    autoscaler's, GPU groups never scale to zero (the services read the cluster's GPUs when
    they start), and FORGELINE_RAY_ADDRESS is the head Service's client port."""
    problems = []
    clusters = find(objects, "RayCluster")
    if len(clusters) != 1:
        return [f"expected one RayCluster, found {len(clusters)}"]
    cluster = clusters[0]
    spec, name = cluster["spec"], cluster["metadata"]["name"]
    for where, container, _ in containers(cluster):
        if "command" in container or "args" in container:
            problems.append(f"{where}: a command of its own overrides KubeRay's `ray start`")
    if spec["headGroupSpec"].get("rayStartParams", {}).get("num-cpus") != "0":
        problems.append(f"RayCluster {name}: the head must have num-cpus '0'")
    autoscaling = spec.get("enableInTreeAutoscaling", False)
    for group in spec.get("workerGroupSpecs", []):
        where = f"RayCluster {name} group {group['groupName']}"
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 0)
        if low != high and not autoscaling:
            problems.append(f"{where}: min {low} != max {high} without the autoscaler")
        if not low <= group.get("replicas", low) <= high:
            problems.append(f"{where}: replicas outside [minReplicas, maxReplicas]")
        gpus = [c.get("resources", {}).get("limits", {}).get(GPU) for c in _group_containers(group)]
        if any(gpus) and low < 1:
            problems.append(f"{where}: GPU group may scale to zero")
    if autoscaling and "autoscalerOptions" not in spec:
        problems.append(f"RayCluster {name}: autoscaling without autoscalerOptions")
    address = urlsplit(config(objects).get("FORGELINE_RAY_ADDRESS", ""))
    if (address.scheme, address.hostname, address.port) != ("ray", f"{name}-head-svc", 10001):
        problems.append(f"FORGELINE_RAY_ADDRESS is not ray://{name}-head-svc:10001")
    return problems


def _group_containers(group: Resource) -> list[Resource]:
    return group["template"]["spec"]["containers"]


def train_storage(objects: list[Resource]) -> list[str]:
    """FORGELINE_TRAIN_STORAGE is a ReadWriteMany claim mounted at that path in the trainer
    and in every Ray pod."""
    trainer = deployment_of(objects, ServiceName.TRAINER)
    if trainer is None:
        return ["no trainer Deployment"]
    (_, container, spec), *_ = containers(trainer)
    path = (env_value(container, "FORGELINE_TRAIN_STORAGE") or {}).get("value", "")
    claim = mounts(container, spec).get(path, {}).get("persistentVolumeClaim", {})
    if not claim:
        return [f"trainer: FORGELINE_TRAIN_STORAGE ({path!r}) is not a mounted claim"]
    problems = []
    pvc = find(objects, "PersistentVolumeClaim", claim["claimName"])
    if not pvc or "ReadWriteMany" not in pvc[0]["spec"]["accessModes"]:
        problems.append(f"claim {claim['claimName']}: not ReadWriteMany")
    for cluster in find(objects, "RayCluster"):
        for where, ray_container, ray_spec in containers(cluster):
            mounted = mounts(ray_container, ray_spec).get(path, {})
            if mounted.get("persistentVolumeClaim") != claim:
                problems.append(f"{where}: does not mount {claim['claimName']} at {path}")
    return problems


def network_policy(objects: list[Resource]) -> list[str]:
    """Ray's control ports admit only Ray pods and the job services; the job services reach
    the client port and Ray pods reach each other on every port."""
    problems = []
    for cluster in find(objects, "RayCluster"):
        ray_labels = {RAY_CLUSTER_LABEL: cluster["metadata"]["name"]}
        rules = [
            rule
            for policy in find(objects, "NetworkPolicy")
            if selects(policy["spec"]["podSelector"], ray_labels)
            and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
            for rule in policy["spec"].get("ingress", [])
        ]
        if not rules:
            problems.append(f"RayCluster {ray_labels}: no NetworkPolicy admits anything")
        for rule in rules:
            ports = {p.get("port") for p in rule.get("ports", [])}
            peers = rule.get("from", [])
            if not peers:
                problems.append(f"NetworkPolicy rule {rule}: admits every source")
            for peer in peers:
                selector = peer.get("podSelector")
                if set(peer) != {"podSelector"}:
                    problems.append(f"NetworkPolicy peer {peer}: not only pods of this namespace")
                elif not _ray_pods_only(selector, ray_labels) and (
                    not ports or ports - RAY_CONTROL_PORTS or not _job_services_only(selector)
                ):
                    problems.append(f"NetworkPolicy peer {peer}: reaches ports {ports or 'all'}")
        if not any(not r.get("ports") and _admits(r, ray_labels) for r in rules):
            problems.append("Ray pods cannot reach each other on every port")
        for service in sorted(JOB_SERVICES):
            deployment = deployment_of(objects, service)
            labels = deployment["spec"]["template"]["metadata"]["labels"] if deployment else {}
            if not any(
                RAY_CLIENT_PORT in {p.get("port") for p in r.get("ports", [])}
                and _admits(r, labels)
                for r in rules
            ):
                problems.append(f"{service}: cannot reach the Ray client port")
    return problems


def _admits(rule: Resource, labels: dict[str, str]) -> bool:
    return any(selects(p.get("podSelector", {}), labels) for p in rule.get("from", []))


def _ray_pods_only(selector: Resource, ray_labels: dict[str, str]) -> bool:
    return all(selector.get("matchLabels", {}).get(k) == v for k, v in ray_labels.items())


def _job_services_only(selector: Resource) -> bool:
    names = selector.get("matchLabels", {}).get(NAME_LABEL)
    if names is not None:
        return names in JOB_SERVICES
    return any(
        e["key"] == NAME_LABEL and e["operator"] == "In" and set(e["values"]) <= JOB_SERVICES
        for e in selector.get("matchExpressions", [])
    )


def non_root(objects: list[Resource]) -> list[str]:
    """Every pod runs as a non-root user, without privilege escalation."""
    problems = []
    for obj in find(objects, "Deployment") + find(objects, "RayCluster"):
        for where, template in pod_templates(obj):
            if not template["spec"].get("securityContext", {}).get("runAsNonRoot"):
                problems.append(f"{where}: runAsNonRoot is not set")
        for where, container, _ in containers(obj):
            if container.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
    return problems


def shared_rate_limits(objects: list[Resource]) -> list[str]:
    """Gateway replicas count rate limits together: FORGELINE_GATEWAY_REDIS_URL names a
    Service that selects a Redis pod on that port."""
    gateway = deployment_of(objects, ServiceName.GATEWAY)
    if gateway is None or gateway["spec"].get("replicas", 1) <= 1:
        return []
    name = f"Deployment {gateway['metadata']['name']}"
    _, container, _ = next(containers(gateway))
    url = (env_value(container, "FORGELINE_GATEWAY_REDIS_URL") or {}).get("value", "")
    if not url:
        return [f"{name}: {gateway['spec']['replicas']} replicas count limits apart (no Redis)"]
    where = urlsplit(url)
    found = find(objects, "Service", where.hostname)
    if not found or not any(p["port"] == (where.port or 6379) for p in found[0]["spec"]["ports"]):
        return [f"{name}: FORGELINE_GATEWAY_REDIS_URL={url!r} names no Service port"]
    redis = [
        d
        for d in find(objects, "Deployment")
        if selects(found[0]["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        and any(c["image"].startswith("redis") for _, c, _ in containers(d))
    ]
    return [] if redis else [f"{name}: Service {where.hostname} selects no Redis pod"]


def metrics_scraped(objects: list[Resource]) -> list[str]:
    """Every service's pod opens its metrics port (the gateway's is its HTTP port) and
    tells Prometheus where it is."""
    problems = []
    for service in ServiceName:
        deployment = deployment_of(objects, service)
        if deployment is None or service is ServiceName.CONSOLE:  # the console has none
            continue
        where = f"Deployment {deployment['metadata']['name']}"
        port = DEFAULT_PORTS[service]
        if service is not ServiceName.GATEWAY:
            port += METRICS_PORT_OFFSET
        pod = deployment["spec"]["template"]
        annotations = pod["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            problems.append(f"{where}: not marked for scraping")
        if annotations.get("prometheus.io/port") != str(port):
            problems.append(f"{where}: prometheus.io/port is not its metrics port {port}")
        opened = {p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
        if port not in opened:
            problems.append(f"{where}: metrics port {port} is not a container port")
    return problems


RULES: tuple[Rule, ...] = (
    services_deployed,
    resource_requests,
    single_gpu_recreate,
    persistent_homes,
    setting_names,
    addresses_match_services,
    secrets,
    probes,
    ray_cluster,
    train_storage,
    network_policy,
    non_root,
    shared_rate_limits,
    metrics_scraped,
)
