"""The RayCluster (`ray.io/v1`) fields Forgeline's manifests may use, as a JSON schema.

Written for these tests from KubeRay's documented v1 API (the operator's CRD is not in any
package registry the tests can reach). It covers the spec fields KubeRay 1.x documents for
clusters like ours; pod templates, containers and resources are checked against the
Kubernetes schemas `kubernetes-validate` ships (`$ref` into its definitions). Objects are
closed, as `kubectl apply --validate=strict` would have them: a misspelt field is an error.
"""

from __future__ import annotations

DEFINITIONS = "https://kubernetes.io/api/_definitions.json#/$defs/"
K8S = DEFINITIONS + "io.k8s.api.core.v1."

STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
REPLICAS = {"type": "integer", "minimum": 0}

AUTOSCALER_OPTIONS = {
    "type": "object",
    "properties": {
        "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
        "idleTimeoutSeconds": {"type": "integer", "minimum": 0},
        "image": {"type": "string"},
        "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        "resources": {"$ref": K8S + "ResourceRequirements"},
        "securityContext": {"$ref": K8S + "SecurityContext"},
        "env": {"type": "array", "items": {"$ref": K8S + "EnvVar"}},
        "envFrom": {"type": "array", "items": {"$ref": K8S + "EnvFromSource"}},
        "volumeMounts": {"type": "array", "items": {"$ref": K8S + "VolumeMount"}},
    },
}

HEAD_GROUP = {
    "type": "object",
    "required": ["rayStartParams", "template"],
    "properties": {
        "rayStartParams": STRING_MAP,
        "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
        "headService": {"$ref": K8S + "Service"},
        "enableIngress": {"type": "boolean"},
        "template": {"$ref": K8S + "PodTemplateSpec"},
    },
}

WORKER_GROUP = {
    "type": "object",
    "required": ["groupName", "rayStartParams", "template"],
    "properties": {
        "groupName": {"type": "string", "minLength": 1},
        "replicas": REPLICAS,
        "minReplicas": REPLICAS,
        "maxReplicas": REPLICAS,
        "numOfHosts": {"type": "integer", "minimum": 1},
        "rayStartParams": STRING_MAP,
        "template": {"$ref": K8S + "PodTemplateSpec"},
        "scaleStrategy": {
            "type": "object",
            "properties": {"workersToDelete": {"type": "array", "items": {"type": "string"}}},
        },
    },
}

RAYCLUSTER = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": {"$ref": DEFINITIONS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
        "spec": {
            "type": "object",
            "required": ["headGroupSpec"],
            "properties": {
                "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                "enableInTreeAutoscaling": {"type": "boolean"},
                "autoscalerOptions": AUTOSCALER_OPTIONS,
                "headServiceAnnotations": STRING_MAP,
                "suspend": {"type": "boolean"},
                "headGroupSpec": HEAD_GROUP,
                "workerGroupSpecs": {"type": "array", "items": WORKER_GROUP},
            },
        },
    },
}
