{{/* Name of the chart (the pods' app.kubernetes.io/name, and the scrape job). */}}
{{- define "netagent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the objects. */}}
{{- define "netagent.fullname" -}}
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

{{- define "netagent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netagent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "netagent.labels" -}}
{{ include "netagent.selectorLabels" . }}
app.kubernetes.io/component: agent
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "netagent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "netagent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* config.yaml: .Values.config with export.listen_addr from metricsPort. */}}
{{- define "netagent.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $export := dict "listen_addr" (printf ":%d" (int .Values.metricsPort)) }}
{{- $_ := set $config "export" $export }}
{{- toYaml $config }}
{{- end }}
