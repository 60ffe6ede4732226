package validate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psapi "k8s.io/pod-security-admission/api"
)

// root is the repository root, seen from deploy/validate.
var root = filepath.Join("..", "..")

// loadVariant loads one variant's bundle.
func loadVariant(t *testing.T, v *Variant) *Bundle {
	t.Helper()
	b, err := Load(root, v)
	if b == nil {
		t.Fatalf("loading the %s variant: %v", v.Name, err)
	}
	if err != nil {
		t.Log("checking what decoded (the decoding errors are reported above)")
	}
	return b
}

// load loads the SQLite variant, the default.
func load(t *testing.T) *Bundle { t.Helper(); return loadVariant(t, SQLite) }

// loadAll loads every variant.
func loadAll(t *testing.T) []*Bundle {
	t.Helper()
	var bs []*Bundle
	for _, v := range Variants {
		bs = append(bs, loadVariant(t, v))
	}
	return bs
}

func report(t *testing.T, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Error(p)
	}
}

// reportVariant reports a variant's problems, saying which.
func reportVariant(t *testing.T, v *Variant, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Errorf("%s: %s", v.Name, p)
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	files, err := AllManifestFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	read := map[string][]string{} // file → the variants reading it
	for _, v := range Variants {
		vf, err := v.Files(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range vf {
			read[f] = append(read[f], v.Name)
		}
	}
	for _, f := range files {
		name := sourceName(root, f)
		t.Run(name, func(t *testing.T) {
			if len(read[f]) == 0 {
				t.Errorf("no variant reads %s: its objects would go unchecked (a variant's Dir or Shared)", name)
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Decode(name, data)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				t.Logf("%s: decoded strictly into %s (%s)", o, o.Kind, strings.Join(read[f], ", "))
			}
		})
	}
}

func TestPodSecurityRestricted(t *testing.T) {
	bundles := loadAll(t)
	for _, b := range bundles {
		if b.Deployment() == nil {
			t.Fatalf("%s: no Deployment", b.Variant.Name)
		}
	}
	tmpl := func(b *Bundle) (*metav1.ObjectMeta, *corev1.PodSpec) {
		d := b.Deployment()
		return &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec
	}
	for _, r := range RestrictedRules {
		t.Run(r.Name, func(t *testing.T) {
			for _, b := range bundles {
				reportVariant(t, b.Variant, r.Check(tmpl(b)))
			}
		})
	}
	t.Run("pod-security-admission evaluator", func(t *testing.T) {
		var names []string
		for _, b := range bundles {
			meta, spec := tmpl(b)
			reportVariant(t, b.Variant, EvaluateAdmission(psapi.LevelRestricted, meta, spec))
			names = append(names, b.Variant.Name)
		}
		vs := AdmissionVersions()
		t.Logf("restricted admits the pod templates (%s) at every profile version %s … %s", strings.Join(names, ", "), vs[0], vs[len(vs)-1])
	})
}

// TestBotRules runs the common rules on every variant.
func TestBotRules(t *testing.T) {
	bundles := loadAll(t)
	for _, r := range BotRules {
		t.Run(r.Name, func(t *testing.T) {
			for _, b := range bundles {
				reportVariant(t, b.Variant, r.Check(b))
			}
		})
	}
	t.Run("the variants agree on all but the store", func(t *testing.T) {
		report(t, CheckVariantsAgree(bundles))
	})
	t.Run("the filled-in copies of the examples are git-ignored", func(t *testing.T) {
		examples, err := Examples(root)
		if err != nil {
			t.Fatal(err)
		}
		report(t, CheckGitignore(readRoot(t, ".gitignore"), examples))
		t.Logf("git-ignored: the filled-in copies of %s", strings.Join(examples, ", "))
	})
	t.Logf("%d environment variables known to the bot (cmd/reprovision-bot envconfig tags)", len(bundles[0].Source.Env))
	for _, b := range bundles {
		if b.ConfigMap() == nil || b.container() == nil {
			continue
		}
		var placeholders, secrets []string
		for k, v := range b.ConfigMap().Data {
			if strings.Contains(v, "REPLACE") {
				placeholders = append(placeholders, k)
			}
		}
		slices.Sort(placeholders)
		for _, s := range all[*corev1.Secret](b) {
			secrets = append(secrets, s.Name)
		}
		noun := "Secret"
		if len(secrets) > 1 {
			noun = "Secrets"
		}
		t.Logf("%s: to fill in before deploying: the ConfigMap's %s, the %s %s, the image (%s)", b.Variant.Name, strings.Join(placeholders, ", "), noun, strings.Join(secrets, " and "), b.container().Image)
	}
}

// TestVariantRules runs each variant's own rules on it.
func TestVariantRules(t *testing.T) {
	for _, b := range loadAll(t) {
		for _, r := range b.Variant.Rules {
			t.Run(r.Name, func(t *testing.T) { report(t, r.Check(b)) })
		}
	}
}

func TestDockerfile(t *testing.T) {
	b := load(t)
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion, err := GoVersion(gomod)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range DockerfileRules {
		t.Run(r.Name, func(t *testing.T) { report(t, r.Check(b.Docker, goVersion)) })
	}
	t.Run("main.version can be stamped", func(t *testing.T) {
		if b.Source.VersionVar != "" {
			t.Error(b.Source.VersionVar)
		}
	})
	t.Run(".dockerignore", func(t *testing.T) {
		ignore, err := os.ReadFile(filepath.Join(root, DockerignorePath))
		if err != nil {
			t.Fatal(err)
		}
		inputs, err := BuildInputs(root)
		if err != nil {
			t.Fatal(err)
		}
		report(t, CheckDockerignore(string(ignore), inputs))
		t.Logf("%d build inputs sent, %d paths kept out", len(inputs), len(MustStayOut))
	})
}
