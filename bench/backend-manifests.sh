# Sourced by the bench scripts that run certgate standalone in front of one local backend.

backend_manifests() { # PORT: Service `backend` (port 80, named http) and its EndpointSlice → 127.0.0.1:PORT
  cat <<YAML
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  ports: [{name: http, port: 80, targetPort: $1}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-1
  labels: {kubernetes.io/service-name: backend}
addressType: IPv4
ports: [{name: http, port: $1}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
YAML
}
