{{/* True when the offline job runs Spark on Kubernetes (its pod is the client-mode driver). */}}
{{- define "recsys.sparkOnK8s" -}}
{{- if hasPrefix "k8s://" .Values.offline.spark.master }}true{{ end }}
{{- end }}

{{/* spark-defaults.conf: what Spark on Kubernetes needs from the chart, then offline.spark.conf. */}}
{{- define "recsys.sparkDefaults" -}}
{{- $conf := dict }}
{{- if include "recsys.sparkOnK8s" . }}
{{- $claim := include "recsys.claimName" . }}
{{- $volume := "spark.kubernetes.executor.volumes.persistentVolumeClaim.data" }}
{{- $_ := set $conf "spark.kubernetes.namespace" .Release.Namespace }}
{{- $_ := set $conf "spark.kubernetes.container.image" (include "recsys.image" .) }}
{{- $_ := set $conf "spark.kubernetes.authenticate.driver.serviceAccountName" (include "recsys.serviceAccountName" .) }}
{{- $_ := set $conf "spark.kubernetes.executor.podNamePrefix" (printf "%s-offline" (include "recsys.fullname" .)) }}
{{- $_ := set $conf (printf "%s.mount.path" $volume) .Values.sharedVolume.mountPath }}
{{- $_ := set $conf (printf "%s.options.claimName" $volume) $claim }}
{{- end }}
{{- range $key, $value := .Values.offline.spark.conf }}
{{- $_ := set $conf $key $value }}
{{- end }}
{{- range $key := keys $conf | sortAlpha }}
{{ $key }} {{ get $conf $key }}
{{- end }}
{{- end }}
