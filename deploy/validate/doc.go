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
//   - The bot's own rules (botrules.go): one replica with Recreate, a pinned
//     image, probes, resources, the store on the volume, and only environment
//     variables the bot reads.
//   - The Dockerfile and .dockerignore (dockerfile.go).
package validate
