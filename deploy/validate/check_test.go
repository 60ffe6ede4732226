package validate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	psapi "k8s.io/pod-security-admission/api"
)

// root is the repository root, seen from deploy/validate.
var root = filepath.Join("..", "..")

func load(t *testing.T) *Bundle {
	t.Helper()
	b, err := Load(root)
	if b == nil {
		t.Fatalf("loading the deploy files: %v", err)
	}
	if err != nil {
		t.Log("checking what decoded (the decoding errors are reported above)")
	}
	return b
}

func report(t *testing.T, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Error(p)
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	files, err := ManifestFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Decode(filepath.Base(f), data)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				t.Logf("%s: decoded strictly into %s", o, o.Kind)
			}
		})
	}
}

func TestPodSecurityRestricted(t *testing.T) {
	d := load(t).Deployment()
	if d == nil {
		t.Fatal("no Deployment")
	}
	meta, spec := &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec
	for _, r := range RestrictedRules {
		t.Run(r.Name, func(t *testing.T) { report(t, r.Check(meta, spec)) })
	}
	t.Run("pod-security-admission evaluator", func(t *testing.T) {
		report(t, EvaluateAdmission(psapi.LevelRestricted, meta, spec))
		vs := AdmissionVersions()
		t.Logf("restricted admits the pod template at every profile version %s … %s", vs[0], vs[len(vs)-1])
	})
}

func TestBotRules(t *testing.T) {
	b := load(t)
	for _, r := range BotRules {
		t.Run(r.Name, func(t *testing.T) { report(t, r.Check(b)) })
	}
	if b.ConfigMap() == nil || b.container() == nil {
		return
	}
	var placeholders []string
	for k, v := range b.ConfigMap().Data {
		if strings.Contains(v, "REPLACE") {
			placeholders = append(placeholders, k)
		}
	}
	slices.Sort(placeholders)
	t.Logf("%d environment variables known to the bot (cmd/reprovision-bot envconfig tags)", len(b.Source.Env))
	t.Logf("to fill in before deploying: the ConfigMap's %s, the Secret's tokens, the image (%s)", strings.Join(placeholders, ", "), b.container().Image)
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
