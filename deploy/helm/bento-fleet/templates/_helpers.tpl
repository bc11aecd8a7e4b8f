{{/* Chart name, overridable with nameOverride. */}}
{{- define "bento-fleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already holds the chart name. Room is kept
for the "-canary" suffix (Service names are DNS-1035 labels, at most 63 characters). */}}
{{- define "bento-fleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bento-fleet.canaryName" -}}
{{- printf "%s-canary" (include "bento-fleet.fullname" .) }}
{{- end }}

{{/* "true" in mode perModel, else empty (a string, for `if`). */}}
{{- define "bento-fleet.perModel" -}}
{{- if eq (toString .Values.mode) "perModel" }}true{{ end }}
{{- end }}

{{/* The name of one model's objects in mode perModel: (dict "ctx" $ "name" "names"). */}}
{{- define "bento-fleet.modelName" -}}
{{- printf "%s-%s" (include "bento-fleet.fullname" .ctx) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector of one model's pods in mode perModel: (dict "ctx" $ "name" "names"). */}}
{{- define "bento-fleet.modelSelectorLabels" -}}
{{ include "bento-fleet.selectorLabels" .ctx }}
bento-fleet/model: {{ .name }}
{{- end }}

{{- define "bento-fleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels shared by every object of the release. */}}
{{- define "bento-fleet.labels" -}}
helm.sh/chart: {{ include "bento-fleet.chart" . }}
{{ include "bento-fleet.selectorLabels" . }}
app.kubernetes.io/part-of: bento-fleet
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels common to stable and canary pods (the ServiceMonitor and PDB use them). */}}
{{- define "bento-fleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bento-fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector of one track: pass (dict "ctx" $ "track" "stable"|"canary"). */}}
{{- define "bento-fleet.trackSelectorLabels" -}}
{{ include "bento-fleet.selectorLabels" .ctx }}
bento-fleet/track: {{ .track }}
{{- end }}

{{- define "bento-fleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bento-fleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bento-fleet.stableTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "bento-fleet.canaryWeight" -}}
{{- if .Values.canary.enabled }}{{ int .Values.canary.weight }}{{ else }}0{{ end }}
{{- end }}

{{/* The pod template of one track: (dict "ctx" $ "track" "stable"|"canary" "repository" repo
"tag" tag "resources" map), plus in mode perModel "model" (dict "name" "workers" "nodeSelector"
"tolerations" "affinity"): the model's label, and its values in place of the top-level ones. */}}
{{- define "bento-fleet.podTemplate" -}}
{{- $ := .ctx -}}
{{- $v := $.Values -}}
{{- $pod := .model | default (pick $v "workers" "nodeSelector" "tolerations" "affinity") -}}
metadata:
  labels:
    {{- include "bento-fleet.labels" $ | nindent 4 }}
    bento-fleet/track: {{ .track }}
    {{- with .model }}
    bento-fleet/model: {{ .name }}
    {{- end }}
    app.kubernetes.io/version: {{ .tag | quote }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if $v.metrics.scrapeAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $v.containerPort | quote }}
    prometheus.io/path: {{ $v.metrics.path | quote }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "bento-fleet.serviceAccountName" $ }}
  automountServiceAccountToken: {{ $v.serviceAccount.automountToken }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: bento-fleet
      image: {{ printf "%s:%s" .repository .tag | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      ports:
        - name: http
          containerPort: {{ $v.containerPort }}
          protocol: TCP
      env:
        - name: BENTOML_HOME
          value: {{ $v.scratch.bentomlHome | quote }}
        - name: BENTOML_PORT
          value: {{ $v.containerPort | quote }}
        - name: BENTOML_DO_NOT_TRACK
          value: "True"
        - name: FLEET_WORKERS
          value: {{ $pod.workers | quote }}
        - name: FLEET_ADMIN_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ $v.adminToken.existingSecret | quote }}
              key: {{ $v.adminToken.key | quote }}
              optional: {{ $v.adminToken.optional }}
        {{- if $v.database.existingSecret }}
        - name: DATABASE_URL
          valueFrom:
            secretKeyRef:
              name: {{ $v.database.existingSecret | quote }}
              key: {{ $v.database.key | quote }}
        {{- else if $v.database.required }}
        {{- fail "database.required is true but database.existingSecret is empty: create a Secret with the prediction log's PostgreSQL URL (see values.yaml) and name it in database.existingSecret" }}
        {{- end }}
        {{- if $v.trainedModels.existingClaim }}
        - name: FLEET_TRAINED_MODELS
          value: {{ $v.trainedModels.mountPath | quote }}
        {{- end }}
        {{- range $name, $value := $v.env }}
        - name: {{ $name }}
          value: {{ $value | toString | quote }}
        {{- end }}
      startupProbe:
        {{- include "bento-fleet.probe" (dict "probe" $v.probes.startup) | nindent 8 }}
      livenessProbe:
        {{- include "bento-fleet.probe" (dict "probe" $v.probes.liveness) | nindent 8 }}
      readinessProbe:
        {{- include "bento-fleet.probe" (dict "probe" $v.probes.readiness) | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: bentoml-home
          mountPath: {{ $v.scratch.bentomlHome }}
        {{- if $v.trainedModels.existingClaim }}
        - name: trained-models
          mountPath: {{ $v.trainedModels.mountPath }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $v.scratch.sizeLimit }}
    - name: bentoml-home
      emptyDir:
        sizeLimit: {{ $v.scratch.sizeLimit }}
    {{- if $v.trainedModels.existingClaim }}
    - name: trained-models
      persistentVolumeClaim:
        claimName: {{ $v.trainedModels.existingClaim | quote }}
    {{- end }}
  {{- with $pod.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $pod.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $pod.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* One HTTP probe on the named container port: (dict "probe" .Values.probes.<kind>). */}}
{{- define "bento-fleet.probe" -}}
httpGet:
  path: {{ .probe.path }}
  port: http
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}
