package validate

// Variant is one way to deploy the bot. Its manifests are loaded as a bundle
// of their own and checked by the common rules (BotRules) and its own.
type Variant struct {
	Name string // as messages say it: SQLite, PostgreSQL
	// Dir holds its manifests (every *.yaml there, relative to the
	// repository root); Shared are manifests of other directories it uses
	// too.
	Dir    string
	Shared []string
	// Counts bounds the number of objects of each kind ("apps/v1
	// Deployment"): {min, max}. A kind not listed may not appear.
	Counts map[string][2]int
	// Readiness is the readiness probe's path, and why when it is not the
	// obvious /readyz.
	Readiness, ReadinessWhy string
	Rules                   []Rule
}

// The variants: SQLite is the simple default (deploy/*.yaml), PostgreSQL
// the highly available one (deploy/postgres/, and the Slack Secret of
// deploy/).
var (
	SQLite = &Variant{
		Name: "SQLite",
		Dir:  "deploy",
		Counts: map[string][2]int{
			"apps/v1 Deployment": {1, 1}, "v1 ConfigMap": {1, 1}, "v1 Secret": {1, 1}, "v1 PersistentVolumeClaim": {1, 1},
			"v1 Namespace": {0, 1}, "v1 Service": {0, 1},
		},
		Readiness: "/readyz",
		Rules:     SQLiteRules,
	}
	Postgres = &Variant{
		Name:   "PostgreSQL",
		Dir:    "deploy/postgres",
		Shared: []string{"deploy/secret.example.yaml"},
		Counts: map[string][2]int{
			"apps/v1 Deployment": {1, 1}, "v1 ConfigMap": {1, 1}, "v1 Secret": {1, 2}, "policy/v1 PodDisruptionBudget": {1, 1},
			"v1 Namespace": {0, 1}, "v1 Service": {0, 1},
		},
		Readiness: "/healthz",
		ReadinessWhy: "a standby answers 503 on /readyz, and the Deployment and the PodDisruptionBudget count only Ready pods: " +
			"with readiness on /readyz at most one pod is ever Ready, so the rollout (maxUnavailable 0) never finishes and no eviction is ever allowed",
		Rules: PostgresRules,
	}
	Variants = []*Variant{SQLite, Postgres}
)
