package validate

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// shared are the parts every variant must have alike: everything but the
// store (REPROVISION_DB, the volume, replicas and strategy, the readiness
// path, the spreading). Otherwise an upgrade of the image, a hardening or a
// new setting in one variant is easily forgotten in the other.
var shared = []struct {
	what string
	get  func(b *Bundle) any
}{
	{"the Namespace", func(b *Bundle) any { return b.Namespace() }},
	{"the Service", func(b *Bundle) any { return b.Service() }},
	{"the ConfigMap (but REPROVISION_DB)", func(b *Bundle) any {
		cm := b.ConfigMap()
		if cm == nil {
			return nil
		}
		c := cm.DeepCopy()
		delete(c.Data, "REPROVISION_DB")
		return c
	}},
	{"the Deployment's name, labels and selector", func(b *Bundle) any {
		d := b.Deployment()
		if d == nil {
			return nil
		}
		return []any{d.Name, d.Namespace, d.Labels, d.Spec.Selector, d.Spec.RevisionHistoryLimit, d.Spec.Template.ObjectMeta}
	}},
	{"the pod's securityContext, service account token, service links and grace period", func(b *Bundle) any {
		d := b.Deployment()
		if d == nil {
			return nil
		}
		s := d.Spec.Template.Spec
		return []any{s.SecurityContext, s.AutomountServiceAccountToken, s.EnableServiceLinks, s.TerminationGracePeriodSeconds}
	}},
	{"the container's image, pull policy, ports, envFrom, securityContext and resources", func(b *Bundle) any {
		c := b.container()
		if c == nil {
			return nil
		}
		return []any{c.Name, c.Image, c.ImagePullPolicy, c.Ports, c.EnvFrom, c.SecurityContext, c.Resources}
	}},
	{"the liveness and startup probes", func(b *Bundle) any {
		c := b.container()
		if c == nil {
			return nil
		}
		return []any{c.LivenessProbe, c.StartupProbe}
	}},
	{"the container's env but REPROVISION_DB", func(b *Bundle) any {
		c := b.container()
		if c == nil {
			return nil
		}
		return slices.DeleteFunc(slices.Clone(c.Env), func(e corev1.EnvVar) bool { return e.Name == "REPROVISION_DB" })
	}},
	{"the /tmp volume", func(b *Bundle) any {
		d, c := b.Deployment(), b.container()
		if d == nil || c == nil {
			return nil
		}
		var out []any
		for _, m := range c.VolumeMounts {
			if m.MountPath == "/tmp" {
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.Name == m.Name {
						out = append(out, m, v)
					}
				}
			}
		}
		return out
	}},
}

// CheckVariantsAgree compares the variants' bundles with the first: what
// they share must be the same.
func CheckVariantsAgree(bundles []*Bundle) []string {
	var p []string
	if len(bundles) < 2 {
		return nil
	}
	a := bundles[0]
	for _, b := range bundles[1:] {
		for _, s := range shared {
			if !equality.Semantic.DeepEqual(s.get(a), s.get(b)) {
				p = append(p, fmt.Sprintf("%s differs between the %s and the %s variant", s.what, a.Variant.Name, b.Variant.Name))
			}
		}
	}
	return p
}

// Examples lists the variants' example files (x.example.yaml), relative to
// root.
func Examples(root string) ([]string, error) {
	seen := map[string]bool{}
	for _, v := range Variants {
		files, err := v.Files(root)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if strings.HasSuffix(f, ".example.yaml") {
				rel, _ := filepath.Rel(root, f)
				seen[filepath.ToSlash(rel)] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// CheckGitignore says which filled-in copies of the examples (x.yaml for
// x.example.yaml: real tokens and passwords) the repository's .gitignore
// does not name. Only plain lines count (/deploy/secret.yaml or
// deploy/secret.yaml), not globs: the copies must be named one by one.
func CheckGitignore(gitignore string, examples []string) []string {
	lines := map[string]bool{}
	for _, l := range strings.Split(gitignore, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines[strings.TrimPrefix(l, "/")] = true
		}
	}
	var p []string
	for _, e := range examples {
		copyPath := strings.TrimSuffix(e, ".example.yaml") + ".yaml"
		if !lines[copyPath] {
			p = append(p, fmt.Sprintf(".gitignore does not name /%s, the filled-in copy of %s: its real secrets could be committed", copyPath, e))
		}
	}
	return p
}
