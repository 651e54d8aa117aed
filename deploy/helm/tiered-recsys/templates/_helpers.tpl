{{/* Names and labels, as `helm create` makes them. */}}
{{- define "recsys.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "recsys.fullname" -}}
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

{{- define "recsys.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "recsys.labels" -}}
helm.sh/chart: {{ include "recsys.chart" . }}
app.kubernetes.io/name: {{ include "recsys.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tiered-recsys
{{- end }}

{{/* Selector labels of one tier: include with (dict "ctx" $ "component" "api"). */}}
{{- define "recsys.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recsys.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "recsys.componentLabels" -}}
{{ include "recsys.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "recsys.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "recsys.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "recsys.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "recsys.secretName" -}}
{{- default (printf "%s-tokens" (include "recsys.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "recsys.claimName" -}}
{{- default (printf "%s-data" (include "recsys.fullname" .)) .Values.sharedVolume.existingClaim }}
{{- end }}

{{/* The environment of every tier: settings from the ConfigMap, tokens from the Secret. */}}
{{- define "recsys.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "recsys.fullname" . }}-config
env:
  - name: RECSYS_ADMIN_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ include "recsys.secretName" . }}
        key: RECSYS_ADMIN_TOKEN
        optional: true
  - name: RECSYS_EVENTS_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ include "recsys.secretName" . }}
        key: RECSYS_EVENTS_TOKEN
        optional: true
{{- end }}

{{- define "recsys.dataVolume" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "recsys.claimName" . }}
{{- end }}

{{- define "recsys.dataMount" -}}
- name: data
  mountPath: {{ .Values.sharedVolume.mountPath }}
{{- end }}

{{- define "recsys.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "recsys.serviceAccountName" . }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
