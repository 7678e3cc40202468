{{/* The chart name. */}}
{{- define "sc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "sc.fullname" -}}
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

{{- define "sc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sc.labels" -}}
helm.sh/chart: {{ include "sc.chart" . }}
{{ include "sc.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The `helm test` Pod's labels: not the selector labels, so that neither the Service, the PDB,
the spread constraints nor the NetworkPolicy's podSelector pick it. */}}
{{- define "sc.testLabels" -}}
helm.sh/chart: {{ include "sc.chart" . }}
{{ include "sc.testSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sc.testSelectorLabels" -}}
app.kubernetes.io/part-of: {{ include "sc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end }}

{{- define "sc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: repository@digest when a digest is given (the tag is then ignored), else
repository:tag (the tag defaulting to the chart's appVersion). */}}
{{- define "sc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The Secret holding the store URL, encryption key and tokens: the existing one or ours. */}}
{{- define "sc.secretName" -}}
{{- default (include "sc.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Whether the chart creates its own Secret (something to put in it, no existing Secret). */}}
{{- define "sc.createSecret" -}}
{{- if and (not .Values.secrets.existingSecret) (or .Values.secrets.storeUrl .Values.secrets.encryptionKey .Values.secrets.authTokens) }}true{{ end }}
{{- end }}

{{/* Whether the encryption key comes from the Secret. */}}
{{- define "sc.hasEncryptionKey" -}}
{{- if or .Values.secrets.existingSecret .Values.secrets.encryptionKey }}true{{ end }}
{{- end }}

{{/* The port the gRPC probes use: plaintext health port under TLS, else the gRPC port. */}}
{{- define "sc.probePort" -}}
{{- if .Values.tls.enabled }}{{ .Values.service.healthPort }}{{ else }}{{ .Values.service.port }}{{ end }}
{{- end }}

{{/* The PromQL label matchers of this release's series: metrics.prometheusRule.selector, or
the namespace and job a ServiceMonitor scrape gives them (job: the Service's name). */}}
{{- define "sc.ruleSelector" -}}
{{- .Values.metrics.prometheusRule.selector | default (printf "namespace=%q,job=%q" .Release.Namespace (include "sc.fullname" .)) }}
{{- end }}

{{/* Checks across values that the JSON schema cannot express. */}}
{{- define "sc.validate" -}}
{{- $grace := int .Values.config.shutdownGraceSeconds }}
{{- $budget := sub (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds) }}
{{- if ge $grace (int $budget) }}
{{- fail (printf "config.shutdownGraceSeconds (%d) must be less than terminationGracePeriodSeconds minus preStopSleepSeconds (%d)" $grace $budget) }}
{{- end }}
{{- if and (eq .Values.store.type "postgres") (not .Values.secrets.existingSecret) (not .Values.secrets.storeUrl) }}
{{- fail "store.type postgres needs the URL: secrets.existingSecret (key secrets.storeUrlKey) or secrets.storeUrl" }}
{{- end }}
{{- if and (eq .Values.store.type "postgres") (not (include "sc.hasEncryptionKey" .)) }}
{{- fail "store.type postgres needs an encryption key: secrets.existingSecret (key secrets.encryptionKeyKey) or secrets.encryptionKey" }}
{{- end }}
{{- if and .Values.auth.enabled (not .Values.secrets.existingSecret) (not .Values.secrets.authTokens) }}
{{- fail "auth.enabled needs tokens: secrets.existingSecret (key secrets.authTokensKey) or secrets.authTokens" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.clientCaSecretName) }}
{{- fail "tls.clientAuth needs tls.clientCaSecretName (a Secret with ca.crt)" }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.enabled) }}
{{- fail "tls.clientAuth needs tls.enabled" }}
{{- end }}
{{- if and .Values.tests.enabled .Values.tls.clientAuth (not .Values.tests.tls.clientCertSecretName) }}
{{- fail "tls.clientAuth: the helm test Pod needs a client certificate: tests.tls.clientCertSecretName (a kubernetes.io/tls Secret signed by the client CA), or tests.enabled: false" }}
{{- end }}
{{- end }}
