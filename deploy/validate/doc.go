// Package validate checks the deployment files in deploy/ (the Kubernetes
// manifests, the Dockerfile and the repository's .dockerignore) without a
// cluster, a Docker engine or the internet. Its tests are run by deploy/check.
//
// It is a module of its own, so that the bot's module does not depend on the
// Kubernetes API packages; it reads the bot's sources (the envconfig tags of
// cmd/reprovision-bot) as files.
//
//   - Manifests are decoded strictly into the Kubernetes API types
//     (k8s.io/api): an unknown or misspelled field, a field given twice or a
//     value of the wrong type is an error, as with kubectl's server-side
//     strict field validation.
//   - Pod Security "restricted": every control of the profile is checked by
//     rules written out here (podsecurity.go), and the pod template is also
//     run through the PodSecurity admission plugin's own evaluator
//     (k8s.io/pod-security-admission) at every profile version.
//   - Two variants, each loaded as a bundle of its own (variants.go): SQLite,
//     the default (deploy/*.yaml), and PostgreSQL (deploy/postgres/*.yaml and
//     the shared deploy/secret.example.yaml).
//   - The bot's own rules, common to both (botrules.go): a pinned image,
//     probes, resources, hardening, one port, only environment variables the
//     bot reads; and each variant's (sqlite.go: one replica with Recreate,
//     the store on the volume; postgres.go: two or more replicas rolling with
//     maxUnavailable 0, the database URL from a Secret, no volume, a
//     PodDisruptionBudget letting one pod go, soft spreading over nodes).
//     The variants must agree on all but the store (agree.go), and the
//     filled-in copies of the example Secrets must be git-ignored.
//   - The Dockerfile and .dockerignore (dockerfile.go).
package validate
