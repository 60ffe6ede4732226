package validate

// The rules must catch what they are for: each case breaks one thing in a
// copy of the real files and expects the matching complaint.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	psapi "k8s.io/pod-security-admission/api"
)

func ptr[T any](v T) *T { return &v }

// requireValid skips a test of mutations when the real files do not load or
// break a rule (a mutation's complaint could then come from the real break):
// the tests of the real files say why.
func requireValid(t *testing.T) {
	t.Helper()
	bundles, err := LoadAll(root)
	if err != nil {
		t.Skip("skipped: the deploy files do not load (see TestManifestsDecodeStrictly)")
	}
	problems := CheckVariantsAgree(bundles)
	for _, b := range bundles {
		problems = append(problems, CheckBot(b)...)
		if d := b.Deployment(); d != nil {
			problems = append(problems, CheckRestricted(&d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec)...)
		}
	}
	if len(problems) > 0 {
		t.Skip("skipped: the deploy files break rules (see TestPodSecurityRestricted, TestBotRules, TestVariantRules)")
	}
}

// expect fails unless some problem contains want.
func expect(t *testing.T, problems []string, want string) {
	t.Helper()
	for _, p := range problems {
		if strings.Contains(p, want) {
			return
		}
	}
	t.Errorf("no problem mentions %q; got %q", want, problems)
}

func readRoot(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// replace replaces old (which must occur) in s.
func replace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%q is not in the file any more; update the test", old)
	}
	return strings.Replace(s, old, new, 1)
}

func TestStrictDecodingRefuses(t *testing.T) {
	manifest := readRoot(t, "deploy/kubernetes.yaml")
	cases := []struct{ name, old, new, want string }{
		{"misspelled field", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"`},
		{"field in the wrong case", "automountServiceAccountToken: false", "AutomountServiceAccountToken: false", `unknown field "spec.template.spec.AutomountServiceAccountToken"`},
		{"field at the wrong level", "      automountServiceAccountToken: false", "      replicas: 1", `unknown field "spec.template.spec.replicas"`},
		{"string for a number", "  replicas: 1", `  replicas: "1"`, "cannot unmarshal string"},
		{"malformed quantity", "memory: 128Mi", "memory: 128MB", "quantities must match"},
		{"key given twice", "  replicas: 1\n", "  replicas: 1\n  replicas: 2\n", `"replicas" already set`},
		{"boolean in a ConfigMap", "REPROVISION_LOG_LEVEL: info", "REPROVISION_ALLOW_SELF_APPROVAL: false", "cannot unmarshal bool"},
		{"an Ingress", "apiVersion: v1\nkind: Namespace", "apiVersion: networking.k8s.io/v1\nkind: Ingress", "no Ingress"},
		{"an unknown kind", "apiVersion: v1\nkind: Namespace", "apiVersion: v1\nkind: Namespaces", `kind "Namespaces"`},
	}
	pg := readRoot(t, "deploy/postgres/kubernetes.yaml")
	pgCases := []struct{ name, old, new, want string }{
		{"PodDisruptionBudget: misspelled field", "  minAvailable: 1", "  minAvailble: 1", `unknown field "spec.minAvailble"`},
		{"PodDisruptionBudget: policy/v1beta1", "apiVersion: policy/v1\n", "apiVersion: policy/v1beta1\n", `apiVersion "policy/v1beta1" kind "PodDisruptionBudget"`},
		{"PodDisruptionBudget: eviction policy misplaced", "  unhealthyPodEvictionPolicy: AlwaysAllow", "  selector2: {}", `unknown field "spec.selector2"`},
		{"rollingUpdate: misspelled field", "maxUnavailable: 0", "maxUnavailible: 0", `unknown field "spec.strategy.rollingUpdate.maxUnavailible"`},
		{"secretKeyRef: misplaced key", "                  key: url", "                  keys: url", `unknown field "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.keys"`},
		{"topologySpreadConstraints: string for a number", "maxSkew: 1", `maxSkew: "1"`, "cannot unmarshal string"},
	}
	for _, c := range pgCases {
		t.Run("postgres/"+c.name, func(t *testing.T) {
			_, err := Decode("postgres/kubernetes.yaml", []byte(replace(t, pg, c.old, c.new)))
			if err == nil {
				t.Fatal("decoded without error")
			}
			expect(t, []string{err.Error()}, c.want)
		})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode("kubernetes.yaml", []byte(replace(t, manifest, c.old, c.new)))
			if err == nil {
				t.Fatal("decoded without error")
			}
			expect(t, []string{err.Error()}, c.want)
		})
	}
}

func TestPodSecurityRulesRefuse(t *testing.T) {
	requireValid(t)
	bot := func(spec *corev1.PodSpec) *corev1.SecurityContext { return spec.Containers[0].SecurityContext }
	cases := []struct {
		name, rule string
		mutate     func(meta *metav1.ObjectMeta, spec *corev1.PodSpec)
	}{
		{"hostProcess", "baseline/HostProcess", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			bot(s).WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: ptr(true)}
		}},
		{"hostNetwork", "baseline/Host Namespaces", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) { s.HostNetwork = true }},
		{"hostPID", "baseline/Host Namespaces", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) { s.HostPID = true }},
		{"hostIPC", "baseline/Host Namespaces", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) { s.HostIPC = true }},
		{"privileged", "baseline/Privileged Containers", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) { bot(s).Privileged = ptr(true) }},
		{"SYS_ADMIN added", "baseline/Capabilities", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			bot(s).Capabilities.Add = []corev1.Capability{"SYS_ADMIN"}
		}},
		{"CHOWN added (baseline allows it)", "restricted/Capabilities", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			bot(s).Capabilities.Add = []corev1.Capability{"CHOWN"}
		}},
		{"ALL not dropped", "restricted/Capabilities", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			bot(s).Capabilities.Drop = []corev1.Capability{"NET_RAW"}
		}},
		{"hostPath volume", "baseline/HostPath Volumes", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			s.Volumes[1].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp"}}
		}},
		{"nfs volume", "restricted/Volume Types", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			s.Volumes[0].VolumeSource = corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs", Path: "/x"}}
		}},
		{"hostPort", "baseline/Host Ports", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) { s.Containers[0].Ports[0].HostPort = 8080 }},
		{"probe host", "baseline/Host Probes and Lifecycle Hooks", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			s.Containers[0].LivenessProbe.HTTPGet.Host = "169.254.169.254"
		}},
		{"preStop host", "baseline/Host Probes and Lifecycle Hooks", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			s.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Host: "10.0.0.1", Port: intstr.FromInt32(80)}}}
		}},
		{"AppArmor unconfined", "baseline/AppArmor", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			s.SecurityContext.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
		}},
		{"AppArmor annotation", "baseline/AppArmor", func(m *metav1.ObjectMeta, _ *corev1.PodSpec) {
			m.Annotations = map[string]string{"container.apparmor.security.beta.kubernetes.io/bot": "unconfined"}
		}},
		{"SELinux type", "baseline/SELinux", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			s.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "spc_t"}
		}},
		{"SELinux user", "baseline/SELinux", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			bot(s).SELinuxOptions = &corev1.SELinuxOptions{User: "system_u"}
		}},
		{"procMount Unmasked", "baseline/proc Mount Type", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			bot(s).ProcMount = ptr(corev1.UnmaskedProcMount)
		}},
		{"seccomp Unconfined", "baseline/Seccomp", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			bot(s).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}},
		{"no seccomp profile", "restricted/Seccomp", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) { s.SecurityContext.SeccompProfile = nil }},
		{"unsafe sysctl", "baseline/Sysctls", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			s.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "kernel.msgmax", Value: "1"}}
		}},
		{"allowPrivilegeEscalation unset", "restricted/Privilege Escalation", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			bot(s).AllowPrivilegeEscalation = nil
		}},
		{"allowPrivilegeEscalation true", "restricted/Privilege Escalation", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			bot(s).AllowPrivilegeEscalation = ptr(true)
		}},
		{"runAsNonRoot false", "restricted/Running as Non-root", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) { bot(s).RunAsNonRoot = ptr(false) }},
		{"runAsNonRoot unset", "restricted/Running as Non-root", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			s.SecurityContext.RunAsNonRoot, bot(s).RunAsNonRoot = nil, nil
		}},
		{"runAsUser 0", "restricted/Running as Non-root user", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) { bot(s).RunAsUser = ptr(int64(0)) }},
		{"init container without a securityContext", "restricted/Privilege Escalation", func(_ *metav1.ObjectMeta, s *corev1.PodSpec) {
			s.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:1.37"}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := load(t).Deployment()
			meta, spec := &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec
			c.mutate(meta, spec)
			expect(t, CheckRestricted(meta, spec), c.rule+": ")
			// The admission plugin agrees.
			if p := EvaluateAdmission(psapi.LevelRestricted, meta, spec); len(p) == 0 {
				t.Error("the pod-security-admission evaluator admits it")
			}
		})
	}
	// Allowed by "restricted": both must accept.
	allowed := []struct {
		name   string
		mutate func(spec *corev1.PodSpec)
	}{
		{"NET_BIND_SERVICE added", func(s *corev1.PodSpec) { bot(s).Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"} }},
		{"seccomp Localhost on the container instead of the pod", func(s *corev1.PodSpec) {
			s.SecurityContext.SeccompProfile = nil
			bot(s).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr("bot.json")}
		}},
		{"a configMap volume", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}})
		}},
	}
	for _, c := range allowed {
		t.Run("allowed/"+c.name, func(t *testing.T) {
			d := load(t).Deployment()
			meta, spec := &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec
			c.mutate(spec)
			report(t, CheckRestricted(meta, spec))
			report(t, EvaluateAdmission(psapi.LevelRestricted, meta, spec))
		})
	}
}

func TestBotRulesRefuse(t *testing.T) {
	requireValid(t)
	ctr := func(b *Bundle) *corev1.Container { return &b.Deployment().Spec.Template.Spec.Containers[0] }
	pod := func(b *Bundle) *corev1.PodSpec { return &b.Deployment().Spec.Template.Spec }
	cases := []struct {
		name, want string
		mutate     func(b *Bundle)
	}{
		{"two objects of a kind", "2 × v1 ConfigMap", func(b *Bundle) {
			b.Objects = append(b.Objects, Object{Source: "x#1", Kind: "v1 ConfigMap", Meta: &metav1.ObjectMeta{Name: "x", Namespace: "reprovision-bot"}, Obj: &corev1.ConfigMap{}})
		}},
		{"no Secret", "0 × v1 Secret", func(b *Bundle) {
			for i, o := range b.Objects {
				if o.Kind == "v1 Secret" {
					b.Objects = append(b.Objects[:i], b.Objects[i+1:]...)
					break
				}
			}
		}},
		{"a second container", "2 containers", func(b *Bundle) { pod(b).Containers = append(pod(b).Containers, *ctr(b)) }},
		{"invalid name", "name \"Reprovision_Bot\"", func(b *Bundle) { b.ConfigMap().Name = "Reprovision_Bot" }},
		{"another namespace", `namespace "default"`, func(b *Bundle) { b.ConfigMap().Namespace = "default" }},
		{"namespace enforces baseline", "want restricted", func(b *Bundle) {
			b.Namespace().Labels["pod-security.kubernetes.io/enforce"] = "baseline"
		}},
		{"namespace label misspelled", "pod-security.kubernetes.io/enforce", func(b *Bundle) {
			b.Namespace().Labels["pod-security.kubernetes.io/enforce"] = "restricted2"
		}},
		{"two replicas", "spec.replicas must be 1", func(b *Bundle) { b.Deployment().Spec.Replicas = ptr(int32(2)) }},
		{"replicas unset (defaults to 1, but say it)", "spec.replicas must be 1", func(b *Bundle) { b.Deployment().Spec.Replicas = nil }},
		{"RollingUpdate", "want Recreate", func(b *Bundle) {
			b.Deployment().Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType}
		}},
		{"selector does not match", "does not match the template", func(b *Bundle) {
			b.Deployment().Spec.Selector.MatchLabels = map[string]string{"app": "other"}
		}},
		{"Service selector does not match", "Service selector", func(b *Bundle) { b.Service().Spec.Selector = map[string]string{"app": "other"} }},
		{":latest", "which moves", func(b *Bundle) { ctr(b).Image = "ghcr.io/reprovision-bot/reprovision-bot:latest" }},
		{"no tag", "no version tag", func(b *Bundle) { ctr(b).Image = "ghcr.io/reprovision-bot/reprovision-bot" }},
		{"no registry", "name the registry", func(b *Bundle) { ctr(b).Image = "reprovision-bot:1.0.0" }},
		{"pull policy Always", "want IfNotPresent", func(b *Bundle) { ctr(b).ImagePullPolicy = corev1.PullAlways }},
		{"pull policy unset", "want IfNotPresent", func(b *Bundle) { ctr(b).ImagePullPolicy = "" }},
		{"readiness on /healthz", "readinessProbe path is \"/healthz\", want /readyz", func(b *Bundle) { ctr(b).ReadinessProbe.HTTPGet.Path = "/healthz" }},
		{"no liveness probe", "livenessProbe is missing", func(b *Bundle) { ctr(b).LivenessProbe = nil }},
		{"exec probe", "must be an httpGet probe", func(b *Bundle) {
			ctr(b).LivenessProbe.ProbeHandler = corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}
		}},
		{"probe on another port", "port 9090, but the bot listens on 8080", func(b *Bundle) { ctr(b).ReadinessProbe.HTTPGet.Port = intstr.FromInt32(9090) }},
		{"probe on an unknown port name", `port "metrics" is not a named port`, func(b *Bundle) { ctr(b).LivenessProbe.HTTPGet.Port = intstr.FromString("metrics") }},
		{"listener on another port", "no containerPort 9090", func(b *Bundle) { b.ConfigMap().Data["REPROVISION_HTTP_ADDR"] = ":9090" }},
		{"listener off", "the probes need the HTTP listener", func(b *Bundle) { b.ConfigMap().Data["REPROVISION_HTTP_ADDR"] = "off" }},
		{"NodePort", "ClusterIP only", func(b *Bundle) { b.Service().Spec.Type = corev1.ServiceTypeNodePort }},
		{"scrape port annotation", "prometheus.io/port 9090", func(b *Bundle) { b.Service().Annotations["prometheus.io/port"] = "9090" }},
		{"no limits", "no memory limit", func(b *Bundle) { ctr(b).Resources.Limits = nil }},
		{"no requests", "no cpu request", func(b *Bundle) { ctr(b).Resources.Requests = nil }},
		{"request above limit", "memory request 256Mi above its limit", func(b *Bundle) {
			ctr(b).Resources.Requests[corev1.ResourceMemory] = resource.MustParse("256Mi")
		}},
		{"memory limit too small", "at least 64Mi", func(b *Bundle) {
			ctr(b).Resources.Limits[corev1.ResourceMemory] = resource.MustParse("32Mi")
			ctr(b).Resources.Requests[corev1.ResourceMemory] = resource.MustParse("32Mi")
		}},
		{"writable root filesystem", "readOnlyRootFilesystem must be true", func(b *Bundle) { ctr(b).SecurityContext.ReadOnlyRootFilesystem = ptr(false) }},
		{"another uid", "runAsUser must be 65532", func(b *Bundle) { pod(b).SecurityContext.RunAsUser = ptr(int64(1000)) }},
		{"no fsGroup", "fsGroup must be 65532", func(b *Bundle) { pod(b).SecurityContext.FSGroup = nil }},
		{"service account token mounted", "automountServiceAccountToken must be false", func(b *Bundle) { pod(b).AutomountServiceAccountToken = nil }},
		{"short grace period", "terminationGracePeriodSeconds must be at least 15", func(b *Bundle) { pod(b).TerminationGracePeriodSeconds = ptr(int64(5)) }},
		{"store on the emptyDir", "not a PersistentVolumeClaim", func(b *Bundle) { b.ConfigMap().Data["REPROVISION_DB"] = "/tmp/reprovision.db" }},
		{"store on the root filesystem", "on no volume mount", func(b *Bundle) { b.ConfigMap().Data["REPROVISION_DB"] = "/var/lib/reprovision.db" }},
		{"relative store path", "must be an absolute path", func(b *Bundle) { b.ConfigMap().Data["REPROVISION_DB"] = "reprovision.db" }},
		{"store mount read-only", "must be writable", func(b *Bundle) { ctr(b).VolumeMounts[0].ReadOnly = true }},
		{"ReadWriteMany claim", "access mode ReadWriteMany", func(b *Bundle) {
			first[*corev1.PersistentVolumeClaim](b).Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
		}},
		{"claim not in the manifests", `claim "other" is not in the manifests`, func(b *Bundle) {
			pod(b).Volumes[0].PersistentVolumeClaim.ClaimName = "other"
		}},
		{"unknown variable", "not read by the bot (no envconfig tag in cmd/reprovision-bot): REPROVISION_TYPO (ConfigMap reprovision-bot-config)", func(b *Bundle) {
			b.ConfigMap().Data["REPROVISION_TYPO"] = "x"
		}},
		{"unknown variable in env", "GOMEMLIMIT (container env)", func(b *Bundle) { ctr(b).Env = []corev1.EnvVar{{Name: "GOMEMLIMIT", Value: "100MiB"}} }},
		{"required variable missing", "AZURE_TENANT_ID is required by the bot", func(b *Bundle) { delete(b.ConfigMap().Data, "AZURE_TENANT_ID") }},
		{"token in the ConfigMap", "tokens belong in the Secret", func(b *Bundle) { b.ConfigMap().Data["SLACK_BOT_TOKEN"] = "REPLACE" }},
		{"real-looking token in the Secret", "never commit a real token", func(b *Bundle) { b.Secret().StringData["SLACK_BOT_TOKEN"] = "xoxb-1234" }},
		{"URL with a password in the ConfigMap", "GRAPH_URL is a URL with a password", func(b *Bundle) {
			b.ConfigMap().Data["GRAPH_URL"] = "https://user:pw@graph.example.com/"
		}},
		{"a Secret nothing uses", "(Secret other) is not used by the container", func(b *Bundle) {
			b.Objects = append(b.Objects, Object{Source: "x#1", Kind: "v1 Secret", Meta: &metav1.ObjectMeta{Name: "other", Namespace: "reprovision-bot"}, Obj: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}}})
		}},
		{"a PodDisruptionBudget with one replica", "1 × policy/v1 PodDisruptionBudget, want none in the SQLite variant", func(b *Bundle) {
			b.Objects = append(b.Objects, Object{Source: "x#1", Kind: "policy/v1 PodDisruptionBudget", Meta: &metav1.ObjectMeta{Name: "x", Namespace: "reprovision-bot"}, Obj: &policyv1.PodDisruptionBudget{}})
		}},
		{"env from a Secret key that is not there", `Secret reprovision-bot-slack has no key "url"`, func(b *Bundle) {
			ctr(b).Env = []corev1.EnvVar{{Name: "REPROVISION_DB", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "reprovision-bot-slack"}, Key: "url"}}}}
		}},
		{"Secret optional", "must not be optional", func(b *Bundle) { ctr(b).EnvFrom[1].SecretRef.Optional = ptr(true) }},
		{"envFrom names another ConfigMap", `envFrom names ConfigMap "other"`, func(b *Bundle) { ctr(b).EnvFrom[0].ConfigMapRef.Name = "other" }},
		{"envFrom prefix", "prefix renames", func(b *Bundle) { ctr(b).EnvFrom[0].Prefix = "BOT_" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := load(t)
			c.mutate(b)
			expect(t, CheckBot(b), c.want)
		})
	}
}

// TestPostgresRulesRefuse breaks the PostgreSQL variant: each copy must be
// refused by the rule it breaks (the common rules run too).
func TestPostgresRulesRefuse(t *testing.T) {
	requireValid(t)
	ctr := func(b *Bundle) *corev1.Container { return &b.Deployment().Spec.Template.Spec.Containers[0] }
	pod := func(b *Bundle) *corev1.PodSpec { return &b.Deployment().Spec.Template.Spec }
	pdb := func(b *Bundle) *policyv1.PodDisruptionBudget { return first[*policyv1.PodDisruptionBudget](b) }
	dbRef := func(b *Bundle) *corev1.SecretKeySelector {
		for _, e := range ctr(b).Env {
			if e.Name == "REPROVISION_DB" {
				return e.ValueFrom.SecretKeyRef
			}
		}
		t.Fatal("no REPROVISION_DB in the container's env any more; update the test")
		return nil
	}
	dbSecret := func(b *Bundle) *corev1.Secret { return b.SecretNamed(dbRef(b).Name) }
	dropEnv := func(b *Bundle) {
		ctr(b).Env = slices.DeleteFunc(ctr(b).Env, func(e corev1.EnvVar) bool { return e.Name == "REPROVISION_DB" })
	}
	remove := func(b *Bundle, kind string) {
		b.Objects = slices.DeleteFunc(b.Objects, func(o Object) bool { return o.Kind == kind })
	}
	pgURL := "postgres://reprovision_bot:REPLACE-with-password@db:5432/reprovision"
	cases := []struct {
		name, want string
		mutate     func(b *Bundle)
	}{
		// replicas and strategy
		{"one replica", "want at least 2", func(b *Bundle) { b.Deployment().Spec.Replicas = ptr(int32(1)) }},
		{"replicas unset (defaults to 1)", "unset means 1", func(b *Bundle) { b.Deployment().Spec.Replicas = nil }},
		{"Recreate", "want RollingUpdate", func(b *Bundle) {
			b.Deployment().Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		}},
		{"maxUnavailable 1", "rollingUpdate.maxUnavailable 1 is 1 pod(s) at 2 replicas, want 0", func(b *Bundle) {
			b.Deployment().Spec.Strategy.RollingUpdate.MaxUnavailable = ptr(intstr.FromInt32(1))
		}},
		{"maxUnavailable 50%", "rollingUpdate.maxUnavailable 50% is 1 pod(s)", func(b *Bundle) {
			b.Deployment().Spec.Strategy.RollingUpdate.MaxUnavailable = ptr(intstr.FromString("50%"))
		}},
		{"maxSurge 0", "the rollout cannot start", func(b *Bundle) {
			b.Deployment().Spec.Strategy.RollingUpdate.MaxSurge = ptr(intstr.FromInt32(0))
		}},
		{"rollingUpdate left to the defaults", "must set maxUnavailable: 0 and maxSurge: 1", func(b *Bundle) {
			b.Deployment().Spec.Strategy.RollingUpdate = nil
		}},
		// readiness
		{"readiness on /readyz", "readinessProbe path is \"/readyz\", want /healthz in the PostgreSQL variant: a standby answers 503", func(b *Bundle) {
			ctr(b).ReadinessProbe.HTTPGet.Path = "/readyz"
		}},
		// the database URL
		{"DB URL in the ConfigMap", "ConfigMap reprovision-bot-config holds REPROVISION_DB", func(b *Bundle) {
			dropEnv(b)
			b.ConfigMap().Data["REPROVISION_DB"] = pgURL
		}},
		{"DB URL in the ConfigMap and the Secret too", "ConfigMap reprovision-bot-config holds REPROVISION_DB", func(b *Bundle) {
			b.ConfigMap().Data["REPROVISION_DB"] = pgURL
		}},
		{"DB URL as a literal env value", "REPROVISION_DB comes from env, want env valueFrom.secretKeyRef", func(b *Bundle) {
			dropEnv(b)
			ctr(b).Env = append(ctr(b).Env, corev1.EnvVar{Name: "REPROVISION_DB", Value: pgURL})
		}},
		{"DB URL from a configMapKeyRef", "comes from ConfigMap reprovision-bot-config key REPROVISION_HTTP_ADDR", func(b *Bundle) {
			dropEnv(b)
			ctr(b).Env = append(ctr(b).Env, corev1.EnvVar{Name: "REPROVISION_DB", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "reprovision-bot-config"}, Key: "REPROVISION_HTTP_ADDR"}}})
		}},
		{"REPROVISION_DB not set (the image's SQLite default)", "REPROVISION_DB is not set", dropEnv},
		{"secretKeyRef optional", "REPROVISION_DB's secretKeyRef must not be optional", func(b *Bundle) { dbRef(b).Optional = ptr(true) }},
		{"secretKeyRef names a Secret not in the manifests", `REPROVISION_DB: Secret "other" is not in the manifests`, func(b *Bundle) {
			dbRef(b).Name = "other"
		}},
		{"secretKeyRef key not in the Secret", `has no key "uri"`, func(b *Bundle) { dbRef(b).Key = "uri" }},
		{"no DB Secret", "secretKeyRef names Secret \"reprovision-bot-db\", not in the manifests", func(b *Bundle) {
			b.Objects = slices.DeleteFunc(b.Objects, func(o Object) bool { return o.Meta.Name == "reprovision-bot-db" })
		}},
		{"a SQLite path in the DB Secret", "the bot takes anything but a postgres:// or postgresql:// URL for a SQLite path", func(b *Bundle) {
			dbSecret(b).StringData["url"] = "/data/REPLACE.db"
		}},
		{"a URL of another scheme", "for a SQLite path", func(b *Bundle) {
			dbSecret(b).StringData["url"] = "mysql://u:REPLACE@db/reprovision"
		}},
		{"a URL without a host", "names no host", func(b *Bundle) {
			dbSecret(b).StringData["url"] = "postgres:///REPLACE-db"
		}},
		{"a real-looking password", "the password is not a REPLACE… placeholder", func(b *Bundle) {
			dbSecret(b).StringData["url"] = "postgres://reprovision_bot:hunter2@REPLACE-with-host/reprovision"
		}},
		{"a real URL", "never commit a real token or password", func(b *Bundle) {
			dbSecret(b).StringData["url"] = "postgres://reprovision_bot:hunter2@db.example.com/reprovision"
		}},
		// no volume
		{"a PersistentVolumeClaim", "1 × v1 PersistentVolumeClaim, want none in the PostgreSQL variant", func(b *Bundle) {
			b.Objects = append(b.Objects, Object{Source: "x#1", Kind: "v1 PersistentVolumeClaim", Meta: &metav1.ObjectMeta{Name: "data", Namespace: "reprovision-bot"},
				Obj: &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"}}})
		}},
		{"a claim volume", `volume "data" is a claim`, func(b *Bundle) {
			pod(b).Volumes = append(pod(b).Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}})
		}},
		// the PodDisruptionBudget
		{"no PodDisruptionBudget", "no PodDisruptionBudget", func(b *Bundle) { remove(b, "policy/v1 PodDisruptionBudget") }},
		{"no PodDisruptionBudget (counted)", "0 × policy/v1 PodDisruptionBudget, want 1", func(b *Bundle) { remove(b, "policy/v1 PodDisruptionBudget") }},
		{"PodDisruptionBudget selector mismatch", "selector app.kubernetes.io/name=other does not match the pod's labels", func(b *Bundle) {
			pdb(b).Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": "other"}
		}},
		{"PodDisruptionBudget selector empty", "empty selector", func(b *Bundle) { pdb(b).Spec.Selector = &metav1.LabelSelector{} }},
		{"PodDisruptionBudget in another namespace", `namespace "default"`, func(b *Bundle) { pdb(b).Namespace = "default" }},
		{"PodDisruptionBudget minAvailable 0", "lets 2 of 2 pods go at once, want at most 1", func(b *Bundle) {
			pdb(b).Spec.MinAvailable = ptr(intstr.FromInt32(0))
		}},
		{"PodDisruptionBudget maxUnavailable 2", "lets 2 of 2 pods go at once", func(b *Bundle) {
			pdb(b).Spec.MinAvailable, pdb(b).Spec.MaxUnavailable = nil, ptr(intstr.FromInt32(2))
		}},
		{"PodDisruptionBudget maxUnavailable 100%", "lets 2 of 2 pods go at once", func(b *Bundle) {
			pdb(b).Spec.MinAvailable, pdb(b).Spec.MaxUnavailable = nil, ptr(intstr.FromString("100%"))
		}},
		{"PodDisruptionBudget minAvailable 2 (blocks every drain)", "lets no pod go at 2 replicas: every node drain would block", func(b *Bundle) {
			pdb(b).Spec.MinAvailable = ptr(intstr.FromInt32(2))
		}},
		{"PodDisruptionBudget minAvailable 100%", "lets no pod go", func(b *Bundle) { pdb(b).Spec.MinAvailable = ptr(intstr.FromString("100%")) }},
		{"PodDisruptionBudget minAvailable 1 at 3 replicas", "lets 2 of 3 pods go at once", func(b *Bundle) { b.Deployment().Spec.Replicas = ptr(int32(3)) }},
		{"PodDisruptionBudget with both bounds", "both set", func(b *Bundle) { pdb(b).Spec.MaxUnavailable = ptr(intstr.FromInt32(1)) }},
		{"PodDisruptionBudget with no bound", "neither minAvailable nor maxUnavailable", func(b *Bundle) { pdb(b).Spec.MinAvailable = nil }},
		// spreading
		{"not spread", "the replicas are not spread over nodes", func(b *Bundle) { pod(b).TopologySpreadConstraints = nil }},
		{"spread by zone only", "the replicas are not spread over nodes", func(b *Bundle) {
			pod(b).TopologySpreadConstraints[0].TopologyKey = "topology.kubernetes.io/zone"
		}},
		{"spread hard", "is DoNotSchedule, want ScheduleAnyway", func(b *Bundle) {
			pod(b).TopologySpreadConstraints[0].WhenUnsatisfiable = corev1.DoNotSchedule
		}},
		{"spread over other pods", "its labelSelector does not match the pod's labels", func(b *Bundle) {
			pod(b).TopologySpreadConstraints[0].LabelSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}
		}},
		{"required anti-affinity", "use preferredDuringScheduling", func(b *Bundle) {
			pod(b).Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				TopologyKey: hostnameKey, LabelSelector: &metav1.LabelSelector{MatchLabels: pod(b).TopologySpreadConstraints[0].LabelSelector.MatchLabels}}}}}
		}},
		// the common rules, on this variant
		{"PodDisruptionBudget with an invalid name", `name "Reprovision_Bot"`, func(b *Bundle) { pdb(b).Name = "Reprovision_Bot" }},
		{"unknown variable in env", "REPROVISION_DATABASE (container env)", func(b *Bundle) { ctr(b).Env[0].Name = "REPROVISION_DATABASE" }},
		{"the Slack Secret optional", "must not be optional", func(b *Bundle) { ctr(b).EnvFrom[1].SecretRef.Optional = ptr(true) }},
		{"no Slack Secret", "envFrom names Secret \"reprovision-bot-slack\", not in the manifests", func(b *Bundle) {
			b.Objects = slices.DeleteFunc(b.Objects, func(o Object) bool { return o.Meta.Name == "reprovision-bot-slack" })
		}},
		{"three Secrets", "3 × v1 Secret, want 1 to 2", func(b *Bundle) {
			b.Objects = append(b.Objects, Object{Source: "x#1", Kind: "v1 Secret", Meta: &metav1.ObjectMeta{Name: "x", Namespace: "reprovision-bot"}, Obj: &corev1.Secret{}})
		}},
		{"writable root filesystem", "readOnlyRootFilesystem must be true", func(b *Bundle) { ctr(b).SecurityContext.ReadOnlyRootFilesystem = ptr(false) }},
		{":latest", "which moves", func(b *Bundle) { ctr(b).Image = "ghcr.io/reprovision-bot/reprovision-bot:latest" }},
		{"liveness on /readyz (a standby would be restarted forever)", "livenessProbe path is \"/readyz\", want /healthz", func(b *Bundle) {
			ctr(b).LivenessProbe.HTTPGet.Path = "/readyz"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := loadVariant(t, Postgres)
			c.mutate(b)
			expect(t, CheckBot(b), c.want)
		})
	}
	// Allowed: both must pass every rule.
	allowed := []struct {
		name   string
		mutate func(b *Bundle)
	}{
		{"maxUnavailable 1 as a PodDisruptionBudget", func(b *Bundle) {
			pdb(b).Spec.MinAvailable, pdb(b).Spec.MaxUnavailable = nil, ptr(intstr.FromInt32(1))
		}},
		{"minAvailable 50%", func(b *Bundle) { pdb(b).Spec.MinAvailable = ptr(intstr.FromString("50%")) }},
		{"three replicas with maxUnavailable 1", func(b *Bundle) {
			b.Deployment().Spec.Replicas = ptr(int32(3))
			pdb(b).Spec.MinAvailable, pdb(b).Spec.MaxUnavailable = nil, ptr(intstr.FromInt32(1))
		}},
		{"a postgresql:// URL", func(b *Bundle) {
			dbSecret(b).StringData["url"] = "postgresql://reprovision_bot:REPLACE-with-password@REPLACE-with-host/reprovision"
		}},
		{"preferred anti-affinity instead of spreading", func(b *Bundle) {
			sel := pod(b).TopologySpreadConstraints[0].LabelSelector
			pod(b).TopologySpreadConstraints = nil
			pod(b).Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: hostnameKey, LabelSelector: sel}}}}}
		}},
	}
	for _, c := range allowed {
		t.Run("allowed/"+c.name, func(t *testing.T) {
			b := loadVariant(t, Postgres)
			c.mutate(b)
			report(t, CheckBot(b))
		})
	}
}

// TestVariantsAgreeRefuses changes one variant in what both must share.
func TestVariantsAgreeRefuses(t *testing.T) {
	requireValid(t)
	cases := []struct {
		name, want string
		mutate     func(b *Bundle)
	}{
		{"another image", "the container's image", func(b *Bundle) { b.container().Image = "ghcr.io/reprovision-bot/reprovision-bot:1.0.1" }},
		{"other resources", "the container's image, pull policy, ports, envFrom, securityContext and resources", func(b *Bundle) {
			b.container().Resources.Limits[corev1.ResourceMemory] = resource.MustParse("256Mi")
		}},
		{"a setting in one ConfigMap only", "the ConfigMap (but REPROVISION_DB)", func(b *Bundle) { b.ConfigMap().Data["REPROVISION_LOG_LEVEL"] = "debug" }},
		{"another Namespace label", "the Namespace", func(b *Bundle) { b.Namespace().Labels["team"] = "x" }},
		{"another Service", "the Service", func(b *Bundle) { b.Service().Spec.PublishNotReadyAddresses = false }},
		{"another grace period", "grace period", func(b *Bundle) { b.Deployment().Spec.Template.Spec.TerminationGracePeriodSeconds = ptr(int64(30)) }},
		{"another liveness probe", "the liveness and startup probes", func(b *Bundle) { b.container().LivenessProbe.PeriodSeconds = 30 }},
		{"another /tmp", "the /tmp volume", func(b *Bundle) {
			b.Deployment().Spec.Template.Spec.Volumes[0].EmptyDir.SizeLimit = ptr(resource.MustParse("1Gi"))
		}},
		{"a variable in one env only", "the container's env but REPROVISION_DB", func(b *Bundle) {
			b.container().Env = append(b.container().Env, corev1.EnvVar{Name: "REPROVISION_LOG_LEVEL", Value: "debug"})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bundles := loadAll(t)
			c.mutate(bundles[1])
			expect(t, CheckVariantsAgree(bundles), c.want)
		})
	}
	t.Run("allowed/the store, replicas, strategy, readiness and spreading differ", func(t *testing.T) {
		report(t, CheckVariantsAgree(loadAll(t)))
	})
}

func TestGitignoreRefuses(t *testing.T) {
	ignore := readRoot(t, ".gitignore")
	examples, err := Examples(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, old, new, want string }{
		{"the DB Secret's copy not ignored", "/deploy/postgres/db-secret.yaml\n", "", "does not name /deploy/postgres/db-secret.yaml"},
		{"the Slack Secret's copy not ignored", "/deploy/secret.yaml\n", "", "does not name /deploy/secret.yaml"},
		{"only commented out", "/deploy/postgres/db-secret.yaml\n", "# /deploy/postgres/db-secret.yaml\n", "does not name /deploy/postgres/db-secret.yaml"},
	} {
		t.Run(c.name, func(t *testing.T) { expect(t, CheckGitignore(replace(t, ignore, c.old, c.new), examples), c.want) })
	}
	t.Run("allowed/without the leading slash", func(t *testing.T) {
		report(t, CheckGitignore(replace(t, ignore, "/deploy/postgres/db-secret.yaml\n", "deploy/postgres/db-secret.yaml\n"), examples))
	})
}

// TestManifestFilesSkipCopies: a filled-in copy of an example is never read
// (it holds real secrets, and would be a second Secret of the name).
func TestManifestFilesSkipCopies(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"deploy/kubernetes.yaml", "deploy/secret.example.yaml", "deploy/secret.yaml", "deploy/slack-app-manifest.yaml",
		"deploy/postgres/kubernetes.yaml", "deploy/postgres/db-secret.example.yaml", "deploy/postgres/db-secret.yaml"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := AllManifestFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, sourceName(dir, f))
	}
	want := []string{"kubernetes.yaml", "secret.example.yaml", "postgres/db-secret.example.yaml", "postgres/kubernetes.yaml"}
	if !slices.Equal(got, want) {
		t.Errorf("manifests %q, want %q", got, want)
	}
}

func TestDockerfileRulesRefuse(t *testing.T) {
	requireValid(t)
	text := readRoot(t, DockerfilePath)
	goVersion, err := GoVersion([]byte(readRoot(t, "go.mod")))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, old, new, want string }{
		{"no -trimpath", "-trimpath ", "", "lacks -trimpath"},
		{"symbols kept", `"-s -w `, `"-w `, `lacks -ldflags "-s …"`},
		{"DWARF kept", `"-s -w `, `"-s `, `lacks -ldflags "-w …"`},
		{"version not stamped", " -X main.version=${VERSION}", "", "lacks -ldflags \"-X main.version=${VERSION}\""},
		{"version stamped into the wrong package", "-X main.version=", "-X github.com/x/version.version=", "the version stamped"},
		{"cgo", "CGO_ENABLED=0 ", "", "lacks CGO_ENABLED=0"},
		{"no ARG VERSION", "ARG VERSION\n", "", "no ARG VERSION in the build stage"},
		{"another Go", "golang:" + goVersion + "-bookworm AS", "golang:1.25.0-bookworm AS", "must carry go.mod's Go version"},
		{"golang:latest", "golang:" + goVersion + "-bookworm AS", "golang:latest AS", "which moves"},
		{"untagged final image", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM gcr.io/distroless/static-debian12", "no version tag"},
		{"not distroless", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:12-slim", "expected gcr.io/distroless/static"},
		{"distroless as root", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM gcr.io/distroless/static-debian12:debug", "use the :nonroot variant"},
		{"scratch without CA certificates", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM scratch", "without CA certificates"},
		{"USER root", "USER 65532:65532", "USER root", "numeric non-root uid:gid"},
		{"no USER", "USER 65532:65532\n", "", "sets no USER"},
		{"shell-form ENTRYPOINT", `ENTRYPOINT ["/reprovision-bot"]`, "ENTRYPOINT /reprovision-bot", "exec form"},
		{"ENTRYPOINT names no copied file", `ENTRYPOINT ["/reprovision-bot"]`, `ENTRYPOINT ["/bot"]`, "no COPY puts a file there"},
		{"store not on the volume", `VOLUME ["/data"]`, `VOLUME ["/var/lib/bot"]`, "is not under a VOLUME"},
		{"no REPROVISION_DB", "ENV REPROVISION_DB=/data/reprovision.db\n", "", "no ENV REPROVISION_DB"},
		{"no EXPOSE", "EXPOSE 8080\n", "", "no EXPOSE"},
		{"single stage", "FROM gcr.io/distroless/static-debian12:nonroot\n", "", "not multi-stage"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := ParseDockerfile(replace(t, text, c.old, c.new))
			if err != nil {
				t.Fatal(err)
			}
			expect(t, CheckDockerfile(d, goVersion), c.want)
		})
	}
	t.Run("allowed/digest-pinned final image", func(t *testing.T) {
		d, err := ParseDockerfile(replace(t, text, "FROM gcr.io/distroless/static-debian12:nonroot", "FROM gcr.io/distroless/static-debian12:nonroot@sha256:"+strings.Repeat("ab", 32)))
		if err != nil {
			t.Fatal(err)
		}
		report(t, CheckDockerfile(d, goVersion))
	})
	// The manifests must agree with the image.
	for _, c := range []struct{ name, old, new, want string }{
		{"EXPOSE another port", "EXPOSE 8080", "EXPOSE 9090", "does not EXPOSE 8080"},
		{"image runs as another user", "USER 65532:65532", "USER 1000:1000", `the Dockerfile's USER is "1000:1000"`},
		{"image puts the store elsewhere", "ENV REPROVISION_DB=/data/reprovision.db", "ENV REPROVISION_DB=/data/other.db", "in the image"},
	} {
		t.Run("manifests/"+c.name, func(t *testing.T) {
			b := load(t)
			if b.Docker, err = ParseDockerfile(replace(t, text, c.old, c.new)); err != nil {
				t.Fatal(err)
			}
			expect(t, CheckBot(b), c.want)
		})
	}
}

func TestDockerignoreRefuses(t *testing.T) {
	ignore := readRoot(t, DockerignorePath)
	inputs, err := BuildInputs(root)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, old, new, want string }{
		{".git sent", "\n.git\n", "\n", ".git/config is sent"},
		{"stores sent", "**/*.db\n", "", "reprovision.db is sent"},
		{"lock files sent", "**/*.db.lock\n", "", "reprovision.db.lock is sent"},
		{".env sent", "\n.env\n", "\n", ".env is sent"},
		{"the local binary sent", "/reprovision-bot\n", "", "reprovision-bot is sent"},
		{"a package excluded", "\ndeploy\n", "\ndeploy\ngraph\n", "graph/"},
		{"all Go excluded", "\ndeploy\n", "\ndeploy\n**/*.go\n", "cmd/reprovision-bot/main.go is excluded"},
		{"go.sum excluded", "\ndeploy\n", "\ndeploy\ngo.sum\n", "go.sum is excluded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expect(t, CheckDockerignore(replace(t, ignore, c.old, c.new), inputs), c.want)
		})
	}
}

func TestReadSource(t *testing.T) {
	write := func(t *testing.T, files map[string]string) string {
		dir := t.TempDir()
		for name, src := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	config := "package main\n\ntype config struct {\n\tA string `envconfig:\"A_VAR\" required:\"true\"`\n\tB string `envconfig:\"B_VAR\" default:\":8080\"`\n\tc int\n}\n"
	test := "package main\n\ntype x struct {\n\tT string `envconfig:\"ONLY_IN_TESTS\"`\n}\n"
	for _, c := range []struct{ name, version, want string }{
		{"uninitialized", "package main\n\nvar version string\n", ""},
		{"a literal", "package main\n\nvar version = \"dev\"\n", ""},
		{"grouped", "package main\n\nvar (\n\tother   int\n\tversion string\n)\n", ""},
		{"a call", "package main\n\nvar version = buildVersion()\n\nfunc buildVersion() string { return \"\" }\n", "not a string literal"},
		{"not a string", "package main\n\nvar version int\n", "not a string variable"},
		{"a constant", "package main\n\nconst version = \"x\"\n", "no package-level `var version string`"},
		{"inside a function", "package main\n\nfunc f() { var version string; _ = version }\n", "no package-level `var version string`"},
	} {
		name := "version/" + c.name
		if c.want == "" {
			name = "allowed/version " + c.name
		}
		t.Run(name, func(t *testing.T) {
			s, err := ReadSource(write(t, map[string]string{"config.go": config, "version.go": c.version, "x_test.go": test}))
			if err != nil {
				t.Fatal(err)
			}
			if c.want == "" && s.VersionVar != "" || c.want != "" && !strings.Contains(s.VersionVar, c.want) {
				t.Errorf("VersionVar = %q, want %q", s.VersionVar, c.want)
			}
			if len(s.Env) != 2 || !s.Env["A_VAR"].Required || s.Env["B_VAR"].Required || s.Env["B_VAR"].Default != ":8080" {
				t.Errorf("Env = %+v", s.Env)
			}
		})
	}
	t.Run("syntax error", func(t *testing.T) {
		if _, err := ReadSource(write(t, map[string]string{"config.go": "package main\n\ntype config struct {"})); err == nil {
			t.Error("no error")
		}
	})
}
