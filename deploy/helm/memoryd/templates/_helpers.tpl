{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "memoryd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name. */}}
{{- define "memoryd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "memoryd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memoryd.labels" -}}
helm.sh/chart: {{ include "memoryd.chart" . }}
{{ include "memoryd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "memoryd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memoryd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "memoryd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "memoryd.secretName" -}}
{{- default (printf "%s-secrets" (include "memoryd.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* Settings for every memoryd container. */}}
{{- define "memoryd.envFrom" -}}
- configMapRef:
    name: {{ include "memoryd.fullname" . }}-config
- secretRef:
    name: {{ include "memoryd.secretName" . }}
{{- end }}

{{/* Changes to settings roll the pods. */}}
{{- define "memoryd.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/* Init containers shared by the agent and worker pods: the ONNX cache copy, then migrations. */}}
{{- define "memoryd.initContainers" -}}
- name: memoryd-cache
  image: {{ include "memoryd.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["sh", "-c", "cp -R /opt/memoryd/cache/. /var/cache/memoryd/"]
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    requests: {cpu: 50m, memory: 32Mi}
    limits: {memory: 64Mi}
  volumeMounts:
    - {name: memoryd-cache, mountPath: /var/cache/memoryd}
{{- if .Values.migrate.enabled }}
- name: memoryd-migrate
  image: {{ include "memoryd.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["migrate"]
  envFrom:
    {{- include "memoryd.envFrom" . | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.migrate.resources | nindent 4 }}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
{{- end }}
{{- end }}

{{- define "memoryd.volumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 256Mi}
- name: memoryd-cache
  emptyDir:
    sizeLimit: {{ .Values.embeddingCache.sizeLimit }}
{{- end }}

{{/* Annotations for annotation-based Prometheus scraping (metrics.enabled). */}}
{{- define "memoryd.metricsAnnotations" -}}
{{- if .Values.metrics.enabled -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}
