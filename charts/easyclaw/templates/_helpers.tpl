{{/* Chart name, overridable. */}}
{{- define "easyclaw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: release-chart, or the release name when it already holds the chart name. */}}
{{- define "easyclaw.fullname" -}}
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

{{- define "easyclaw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; call with (dict "ctx" $ "component" "api"). */}}
{{- define "easyclaw.labels" -}}
helm.sh/chart: {{ include "easyclaw.chart" .ctx }}
{{ include "easyclaw.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: easyclaw
{{- end }}

{{/* Labels that select a component's pods; never change them on upgrade. */}}
{{- define "easyclaw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "easyclaw.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "easyclaw.componentName" -}}
{{- printf "%s-%s" (include "easyclaw.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* repository:tag, or repository:tag@digest when a digest is given (the digest decides what runs). */}}
{{- define "easyclaw.image" -}}
{{- $image := printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- with .Values.image.digest }}
{{- $image = printf "%s@%s" $image . }}
{{- end }}
{{- $image }}
{{- end }}

{{/* A component's envFrom: the shared ConfigMap, then its extraEnvFrom.
Call with (dict "ctx" $ "values" .Values.api). */}}
{{- define "easyclaw.envFrom" -}}
- configMapRef:
    name: {{ include "easyclaw.fullname" .ctx }}
{{- with .values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A component's secretEnv as env entries, one secretKeyRef each. */}}
{{- define "easyclaw.secretEnv" -}}
{{- range $name, $ref := .secretEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- end }}
{{- end }}

{{/* The Secret holding DATABASE_URL: the user's, else the development one. */}}
{{- define "easyclaw.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if .Values.postgresql.enabled }}
{{- printf "%s-database" (include "easyclaw.fullname" .) }}
{{- else }}
{{- fail "set database.existingSecret to a Secret holding DATABASE_URL, or postgresql.enabled=true for a development database" }}
{{- end }}
{{- end }}

{{- define "easyclaw.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}DATABASE_URL{{ end }}
{{- end }}

{{- define "easyclaw.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "easyclaw.databaseSecretName" . }}
      key: {{ include "easyclaw.databaseSecretKey" . }}
{{- end }}

{{/*
Every pod spec sets enableServiceLinks: false. Kubernetes would otherwise inject
variables for each Service, and for the Service easyclaw-api those are
EASYCLAW_API_PORT=tcp://... and friends: inside the EASYCLAW_ settings prefix,
where they would break every process's configuration.
*/}}

{{/* Every pod runs unprivileged under the runtime default seccomp profile. */}}
{{- define "easyclaw.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "easyclaw.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* A writable /tmp on the read-only root filesystem. */}}
{{- define "easyclaw.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "easyclaw.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "easyclaw.configChecksum" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}

{{/* nodeSelector, tolerations and affinity of a component's values. */}}
{{- define "easyclaw.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Seconds a worker may spend finishing its jobs on SIGTERM: the job timeout. */}}
{{- define "easyclaw.workerShutdownGrace" -}}
{{- .Values.config.jobDefaultTimeoutSeconds | int }}
{{- end }}

{{/*
The development database password: the one in the existing Secret (the argument,
what `lookup` found, or an empty map), else a new random one. Reusing it matters:
the data on the PVC was initialised with it.
*/}}
{{- define "easyclaw.postgresqlPassword" -}}
{{- $existing := dig "data" "POSTGRES_PASSWORD" "" (. | default dict) }}
{{- if $existing }}
{{- $existing | b64dec }}
{{- else }}
{{- randAlphaNum 24 }}
{{- end }}
{{- end }}

{{/*
The container's command. With development.sourceSync (skaffold dev) it runs under
watchfiles, which restarts it when skaffold syncs a changed source file into the
package directory; otherwise the image's entrypoint with the command as argument.
Call with (dict "ctx" $ "command" "api").
*/}}
{{- define "easyclaw.command" -}}
{{- if .ctx.Values.development.sourceSync -}}
command: ["watchfiles", "--target-type", "command", "--filter", "default", {{ printf "easyclaw %s" .command | quote }}, {{ .ctx.Values.development.packageDir | quote }}]
{{- else -}}
args: [{{ .command | quote }}]
{{- end }}
{{- end }}

{{/* development.sourceSync: a writable copy of the installed package, where skaffold syncs to. */}}
{{- define "easyclaw.sourceInitContainers" -}}
initContainers:
  - name: copy-source
    image: {{ include "easyclaw.image" . | quote }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command: ["cp", "-R", {{ printf "%s/." .Values.development.packageDir | quote }}, "/source/"]
    securityContext:
      {{- include "easyclaw.containerSecurityContext" . | nindent 6 }}
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {cpu: 100m, memory: 64Mi}
    volumeMounts:
      - name: source
        mountPath: /source
      {{- include "easyclaw.tmpMount" . | nindent 6 }}
{{- end }}

{{- define "easyclaw.sourceMount" -}}
- name: source
  mountPath: {{ .Values.development.packageDir }}
{{- end }}

{{- define "easyclaw.sourceVolume" -}}
- name: source
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
