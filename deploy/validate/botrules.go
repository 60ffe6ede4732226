package validate

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	psapi "k8s.io/pod-security-admission/api"
)

// Bundle is everything the rules look at for one variant: its decoded
// manifests, the bot's environment contract and the Dockerfile.
type Bundle struct {
	Variant *Variant
	Objects []Object
	Source  Source
	Docker  *Dockerfile
}

// The bundle's objects by kind (nil when there is none).

func (b *Bundle) Namespace() *corev1.Namespace   { return first[*corev1.Namespace](b) }
func (b *Bundle) Deployment() *appsv1.Deployment { return first[*appsv1.Deployment](b) }
func (b *Bundle) ConfigMap() *corev1.ConfigMap   { return first[*corev1.ConfigMap](b) }
func (b *Bundle) Secret() *corev1.Secret         { return first[*corev1.Secret](b) }
func (b *Bundle) Service() *corev1.Service       { return first[*corev1.Service](b) }

// The bundle's objects of a kind, in order.
func all[T any](b *Bundle) []T {
	var ts []T
	for _, o := range b.Objects {
		if t, ok := o.Obj.(T); ok {
			ts = append(ts, t)
		}
	}
	return ts
}

// SecretNamed returns the Secret of that name, or nil.
func (b *Bundle) SecretNamed(name string) *corev1.Secret {
	for _, s := range all[*corev1.Secret](b) {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ConfigMapNamed returns the ConfigMap of that name, or nil.
func (b *Bundle) ConfigMapNamed(name string) *corev1.ConfigMap {
	for _, c := range all[*corev1.ConfigMap](b) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// secretData is a Secret's keys and values, data and stringData merged (as
// the API server does, stringData winning).
func secretData(s *corev1.Secret) map[string]string {
	keys := map[string]string{}
	for k, v := range s.Data {
		keys[k] = string(v)
	}
	for k, v := range s.StringData {
		keys[k] = v
	}
	return keys
}

// replicas is the Deployment's replica count (unset: 1, as the API server
// defaults it).
func replicas(d *appsv1.Deployment) int {
	if d.Spec.Replicas == nil {
		return 1
	}
	return int(*d.Spec.Replicas)
}

func first[T any](b *Bundle) T {
	for _, o := range b.Objects {
		if t, ok := o.Obj.(T); ok {
			return t
		}
	}
	var zero T
	return zero
}

// container returns the Deployment's one container.
func (b *Bundle) container() *corev1.Container {
	d := b.Deployment()
	if d == nil || len(d.Spec.Template.Spec.Containers) == 0 {
		return nil
	}
	return &d.Spec.Template.Spec.Containers[0]
}

// Rule is one check over the whole bundle.
type Rule struct {
	Name  string
	Check func(b *Bundle) []string
}

const botUID = 65532

// BotRules are this bot's own rules for its manifests, common to every
// variant; each variant has rules of its own too (Variant.Rules).
var BotRules = []Rule{
	{"objects: the kinds and numbers the variant needs (SQLite: a PersistentVolumeClaim; PostgreSQL: a PodDisruptionBudget)", func(b *Bundle) (p []string) {
		count := map[string]int{}
		for _, o := range b.Objects {
			count[o.Kind]++
		}
		for _, k := range sortedKeys(kinds) {
			want := b.Variant.Counts[k] // {0, 0} when not listed
			if count[k] >= want[0] && count[k] <= want[1] {
				continue
			}
			switch {
			case want[1] == 0:
				p = append(p, fmt.Sprintf("%d × %s, want none in the %s variant", count[k], k, b.Variant.Name))
			case want[0] == want[1]:
				p = append(p, fmt.Sprintf("%d × %s, want %d", count[k], k, want[0]))
			case want[0] == 0:
				p = append(p, fmt.Sprintf("%d × %s, want at most %d", count[k], k, want[1]))
			default:
				p = append(p, fmt.Sprintf("%d × %s, want %d to %d", count[k], k, want[0], want[1]))
			}
		}
		if d := b.Deployment(); d != nil && len(d.Spec.Template.Spec.Containers) != 1 {
			p = append(p, fmt.Sprintf("the Deployment has %d containers, want 1", len(d.Spec.Template.Spec.Containers)))
		}
		return p
	}},
	{"names, labels and namespaces", func(b *Bundle) (p []string) {
		ns := ""
		if n := b.Namespace(); n != nil {
			ns = n.Name
		}
		for _, o := range b.Objects {
			nameCheck := validation.IsDNS1123Subdomain
			if o.Kind == "v1 Namespace" || o.Kind == "v1 Service" {
				nameCheck = validation.IsDNS1123Label
			}
			for _, e := range nameCheck(o.Meta.Name) {
				p = append(p, fmt.Sprintf("%s: name %q: %s", o, o.Meta.Name, e))
			}
			for k, v := range o.Meta.Labels {
				for _, e := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
					p = append(p, fmt.Sprintf("%s: label %s=%s: %s", o, k, v, e))
				}
			}
			switch {
			case o.Kind == "v1 Namespace":
				if o.Meta.Namespace != "" {
					p = append(p, fmt.Sprintf("%s: a Namespace has no namespace", o))
				}
			case ns != "" && o.Meta.Namespace != ns:
				p = append(p, fmt.Sprintf("%s: namespace %q, want %q (the Namespace in the manifests)", o, o.Meta.Namespace, ns))
			}
		}
		return p
	}},
	{"the Namespace enforces Pod Security restricted", func(b *Bundle) (p []string) {
		n := b.Namespace()
		if n == nil {
			return nil // deployed into a namespace of the operator's choosing
		}
		pol, errs := psapi.PolicyToEvaluate(n.Labels, psapi.Policy{})
		for _, e := range errs {
			p = append(p, e.Error())
		}
		if pol.Enforce.Level != psapi.LevelRestricted {
			p = append(p, fmt.Sprintf("label %s is %q, want restricted", psapi.EnforceLevelLabel, n.Labels[psapi.EnforceLevelLabel]))
		}
		return p
	}},
	{"selectors match the pod template", func(b *Bundle) (p []string) {
		d := b.Deployment()
		if d == nil {
			return nil
		}
		podLabels := labels.Set(d.Spec.Template.Labels)
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		switch {
		case err != nil:
			p = append(p, "Deployment selector: "+err.Error())
		case sel.Empty():
			p = append(p, "Deployment selector is empty")
		case !sel.Matches(podLabels):
			p = append(p, fmt.Sprintf("Deployment selector %s does not match the template's labels %v", sel, podLabels))
		}
		if s := b.Service(); s != nil {
			if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
				p = append(p, fmt.Sprintf("Service selector %v does not match the pod's labels %v", s.Spec.Selector, podLabels))
			}
		}
		return p
	}},
	{"image pinned, pulled IfNotPresent", func(b *Bundle) (p []string) {
		c := b.container()
		if c == nil {
			return nil
		}
		if why := pinned(c.Image); why != "" {
			p = append(p, "image "+why)
		}
		if repo, _, _ := imageRef(c.Image); !strings.Contains(repo, "/") {
			p = append(p, fmt.Sprintf("image %s: name the registry and repository (ghcr.io/<org>/reprovision-bot)", c.Image))
		}
		if c.ImagePullPolicy != corev1.PullIfNotPresent {
			p = append(p, fmt.Sprintf("imagePullPolicy is %q, want IfNotPresent", c.ImagePullPolicy))
		}
		return p
	}},
	{"probes: liveness and startup /healthz, readiness /readyz (SQLite) or /healthz (PostgreSQL), on the HTTP port", func(b *Bundle) (p []string) {
		c := b.container()
		if c == nil {
			return nil
		}
		port, perr := httpPort(b)
		check := func(name string, pr *corev1.Probe, want string, required bool) {
			switch {
			case pr == nil:
				if required {
					p = append(p, name+" is missing")
				}
				return
			case pr.HTTPGet == nil:
				p = append(p, name+" must be an httpGet probe")
				return
			case pr.HTTPGet.Path != want:
				msg := fmt.Sprintf("%s path is %q, want %s", name, pr.HTTPGet.Path, want)
				if name == "readinessProbe" && b.Variant.ReadinessWhy != "" {
					msg += " in the " + b.Variant.Name + " variant: " + b.Variant.ReadinessWhy
				}
				p = append(p, msg)
			case pr.HTTPGet.Scheme != "" && pr.HTTPGet.Scheme != corev1.URISchemeHTTP:
				p = append(p, name+" scheme must be HTTP")
			}
			if got, err := resolvePort(c, pr.HTTPGet.Port); err != nil {
				p = append(p, name+": "+err.Error())
			} else if perr == nil && got != port {
				p = append(p, fmt.Sprintf("%s port %d, but the bot listens on %d", name, got, port))
			}
			if pr.TimeoutSeconds > 0 && pr.PeriodSeconds > 0 && pr.TimeoutSeconds > pr.PeriodSeconds {
				p = append(p, name+": timeoutSeconds longer than periodSeconds")
			}
		}
		check("livenessProbe", c.LivenessProbe, "/healthz", true)
		check("readinessProbe", c.ReadinessProbe, b.Variant.Readiness, true)
		check("startupProbe", c.StartupProbe, "/healthz", false)
		return p
	}},
	{"one HTTP port: the listener, containerPort, probes, Service, EXPOSE", func(b *Bundle) (p []string) {
		c := b.container()
		if c == nil {
			return nil
		}
		port, err := httpPort(b)
		if err != nil {
			return []string{err.Error()}
		}
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return int(cp.ContainerPort) == port }) {
			p = append(p, fmt.Sprintf("the container declares no containerPort %d", port))
		}
		for _, cp := range c.Ports {
			if cp.Name != "" {
				for _, e := range validation.IsValidPortName(cp.Name) {
					p = append(p, fmt.Sprintf("port name %q: %s", cp.Name, e))
				}
			}
		}
		if s := b.Service(); s != nil {
			if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
				p = append(p, fmt.Sprintf("Service type %s: ClusterIP only, nothing is served outside the cluster", s.Spec.Type))
			}
			for _, sp := range s.Spec.Ports {
				target := sp.TargetPort
				if target == (intstr.IntOrString{}) {
					target = intstr.FromInt32(sp.Port)
				}
				if got, err := resolvePort(c, target); err != nil {
					p = append(p, "Service: "+err.Error())
				} else if got != port {
					p = append(p, fmt.Sprintf("Service targets port %d, the bot listens on %d", got, port))
				}
			}
			if a, ok := s.Annotations["prometheus.io/port"]; ok && a != strconv.Itoa(port) {
				p = append(p, fmt.Sprintf("annotation prometheus.io/port %s, the bot listens on %d", a, port))
			}
			if a, ok := s.Annotations["prometheus.io/path"]; ok && a != "/metrics" {
				p = append(p, fmt.Sprintf("annotation prometheus.io/path %s, want /metrics", a))
			}
		}
		if b.Docker != nil && !slices.Contains(b.Docker.Facts().Expose, strconv.Itoa(port)) {
			p = append(p, fmt.Sprintf("the Dockerfile does not EXPOSE %d", port))
		}
		return p
	}},
	{"resources: requests and limits", func(b *Bundle) (p []string) {
		c := b.container()
		if c == nil {
			return nil
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if !hasReq || req.IsZero() {
				p = append(p, fmt.Sprintf("no %s request", r))
			}
			if !hasLim || lim.IsZero() {
				p = append(p, fmt.Sprintf("no %s limit", r))
			}
			if hasReq && hasLim && req.Cmp(lim) > 0 {
				p = append(p, fmt.Sprintf("%s request %s above its limit %s", r, req.String(), lim.String()))
			}
		}
		if lim, ok := c.Resources.Limits[corev1.ResourceMemory]; ok && lim.Cmp(resource.MustParse("64Mi")) < 0 {
			p = append(p, fmt.Sprintf("memory limit %s: the bot idles at about 25 MB RSS; give it at least 64Mi", lim.String()))
		}
		return p
	}},
	{"hardening beyond restricted: read-only root, uid 65532, no API token, grace period", func(b *Bundle) (p []string) {
		d, c := b.Deployment(), b.container()
		if d == nil || c == nil {
			return nil
		}
		spec := d.Spec.Template.Spec
		if c.SecurityContext == nil || !isTrue(c.SecurityContext.ReadOnlyRootFilesystem) {
			p = append(p, "readOnlyRootFilesystem must be true (the store lives on the volume)")
		}
		psc := spec.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		for name, v := range map[string]*int64{"runAsUser": psc.RunAsUser, "runAsGroup": psc.RunAsGroup, "fsGroup": psc.FSGroup} {
			if v == nil || *v != botUID {
				p = append(p, fmt.Sprintf("pod securityContext.%s must be %d (the image's nonroot user; fsGroup makes the volume writable)", name, botUID))
			}
		}
		if b.Docker != nil {
			if u := b.Docker.Facts().User; u != fmt.Sprintf("%d:%d", botUID, botUID) {
				p = append(p, fmt.Sprintf("the Dockerfile's USER is %q, the pod runs as %d:%d", u, botUID, botUID))
			}
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			p = append(p, "automountServiceAccountToken must be false: the bot calls no Kubernetes API")
		}
		if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds < 15 {
			p = append(p, "terminationGracePeriodSeconds must be at least 15: the bot takes up to 10 s to stop after SIGTERM")
		}
		return p
	}},
	{"environment: only variables the bot reads; every required one; tokens and passwords only in Secrets, as REPLACE placeholders", func(b *Bundle) (p []string) {
		c := b.container()
		if c == nil {
			return nil
		}
		known := b.Source.Env
		var unknown []string
		note := func(where, name string) {
			for _, e := range validation.IsEnvVarName(name) {
				p = append(p, fmt.Sprintf("%s: %s: %s", where, name, e))
			}
			if _, ok := known[name]; !ok {
				unknown = append(unknown, fmt.Sprintf("%s (%s)", name, where))
			}
		}
		have := map[string]bool{}
		used := map[string]bool{} // "ConfigMap x", "Secret y": referenced by the container
		for _, cm := range all[*corev1.ConfigMap](b) {
			for _, k := range sortedKeys(cm.Data) {
				if isSecretName(k) {
					p = append(p, fmt.Sprintf("ConfigMap %s holds %s: tokens belong in the Secret", cm.Name, k))
				}
				if u, err := url.Parse(cm.Data[k]); err == nil && u.User != nil {
					if _, set := u.User.Password(); set {
						p = append(p, fmt.Sprintf("ConfigMap %s: %s is a URL with a password: it belongs in a Secret", cm.Name, k))
					}
				}
			}
			if len(cm.BinaryData) > 0 {
				p = append(p, fmt.Sprintf("ConfigMap %s: binaryData is not environment", cm.Name))
			}
		}
		for _, sec := range all[*corev1.Secret](b) {
			data := secretData(sec)
			for _, k := range sortedKeys(data) {
				if !strings.Contains(data[k], "REPLACE") {
					p = append(p, fmt.Sprintf("Secret %s: %s is not a REPLACE… placeholder: never commit a real token or password", sec.Name, k))
				}
			}
		}
		var cmRef, secRef bool
		for _, ef := range c.EnvFrom {
			if ef.Prefix != "" {
				p = append(p, "envFrom with a prefix renames the variables: the bot would not see them")
			}
			switch {
			case ef.ConfigMapRef != nil:
				if isTrue(ef.ConfigMapRef.Optional) {
					p = append(p, "envFrom: the ConfigMap must not be optional")
				}
				cm := b.ConfigMapNamed(ef.ConfigMapRef.Name)
				if cm == nil {
					p = append(p, fmt.Sprintf("envFrom names ConfigMap %q, not in the manifests", ef.ConfigMapRef.Name))
					continue
				}
				cmRef, used["ConfigMap "+cm.Name] = true, true
				for _, k := range sortedKeys(cm.Data) {
					note("ConfigMap "+cm.Name, k)
					have[k] = true
				}
			case ef.SecretRef != nil:
				if isTrue(ef.SecretRef.Optional) {
					p = append(p, "envFrom: the Secret must not be optional (the bot cannot start without its tokens)")
				}
				sec := b.SecretNamed(ef.SecretRef.Name)
				if sec == nil {
					p = append(p, fmt.Sprintf("envFrom names Secret %q, not in the manifests", ef.SecretRef.Name))
					continue
				}
				secRef, used["Secret "+sec.Name] = true, true
				for _, k := range sortedKeys(secretData(sec)) {
					note("Secret "+sec.Name, k)
					have[k] = true
				}
			}
		}
		for _, e := range c.Env {
			note("container env", e.Name)
			have[e.Name] = true
			if e.ValueFrom == nil {
				continue
			}
			switch ref := e.ValueFrom; {
			case ref.SecretKeyRef != nil:
				sec := b.SecretNamed(ref.SecretKeyRef.Name)
				if sec == nil {
					p = append(p, fmt.Sprintf("env %s: secretKeyRef names Secret %q, not in the manifests", e.Name, ref.SecretKeyRef.Name))
					continue
				}
				used["Secret "+sec.Name] = true
				if _, ok := secretData(sec)[ref.SecretKeyRef.Key]; !ok {
					p = append(p, fmt.Sprintf("env %s: Secret %s has no key %q", e.Name, sec.Name, ref.SecretKeyRef.Key))
				}
			case ref.ConfigMapKeyRef != nil:
				cm := b.ConfigMapNamed(ref.ConfigMapKeyRef.Name)
				if cm == nil {
					p = append(p, fmt.Sprintf("env %s: configMapKeyRef names ConfigMap %q, not in the manifests", e.Name, ref.ConfigMapKeyRef.Name))
					continue
				}
				used["ConfigMap "+cm.Name] = true
				if _, ok := cm.Data[ref.ConfigMapKeyRef.Key]; !ok {
					p = append(p, fmt.Sprintf("env %s: ConfigMap %s has no key %q", e.Name, cm.Name, ref.ConfigMapKeyRef.Key))
				}
			}
		}
		if !cmRef || !secRef {
			p = append(p, "the container must take its environment from both the ConfigMap and the Secret (envFrom)")
		}
		for _, o := range b.Objects {
			if k := o.Kind[strings.LastIndex(o.Kind, " ")+1:]; (k == "ConfigMap" || k == "Secret") && !used[k+" "+o.Meta.Name] {
				p = append(p, fmt.Sprintf("%s is not used by the container", o))
			}
		}
		if len(unknown) > 0 {
			p = append(p, fmt.Sprintf("not read by the bot (no envconfig tag in cmd/reprovision-bot): %s", strings.Join(unknown, ", ")))
		}
		for _, name := range sortedKeys(known) {
			if known[name].Required && !have[name] {
				p = append(p, fmt.Sprintf("%s is required by the bot (%s) but set nowhere", name, known[name].Where))
			}
		}
		return p
	}},
}

// envVar is a variable of the container's environment and where its value
// comes from.
type envVar struct {
	Value string // the literal, or the ConfigMap's or Secret's value
	From  string // "ConfigMap x", "Secret x", "env", "Secret x key k", "ConfigMap x key k"
	Ref   *corev1.SecretKeySelector
}

// envVars is the container's environment as the manifests set it (not the
// image's ENV), resolved the way the kubelet does: envFrom in order, a later
// source winning, then env, which wins over envFrom.
func (b *Bundle) envVars() map[string]envVar {
	env := map[string]envVar{}
	c := b.container()
	if c == nil {
		return env
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			if cm := b.ConfigMapNamed(ef.ConfigMapRef.Name); cm != nil {
				for k, v := range cm.Data {
					env[ef.Prefix+k] = envVar{Value: v, From: "ConfigMap " + cm.Name}
				}
			}
		case ef.SecretRef != nil:
			if sec := b.SecretNamed(ef.SecretRef.Name); sec != nil {
				for k, v := range secretData(sec) {
					env[ef.Prefix+k] = envVar{Value: v, From: "Secret " + sec.Name}
				}
			}
		}
	}
	for _, e := range c.Env {
		v := envVar{Value: e.Value, From: "env"}
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			v = envVar{From: "Secret " + r.Name + " key " + r.Key, Ref: r}
			if sec := b.SecretNamed(r.Name); sec != nil {
				v.Value = secretData(sec)[r.Key]
			}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			v = envVar{From: "ConfigMap " + r.Name + " key " + r.Key}
			if cm := b.ConfigMapNamed(r.Name); cm != nil {
				v.Value = cm.Data[r.Key]
			}
		default:
			v.From = "env (valueFrom)"
		}
		env[e.Name] = v
	}
	return env
}

// env is the container's environment as the manifests set it: name → value.
func (b *Bundle) env() map[string]string {
	env := map[string]string{}
	for k, v := range b.envVars() {
		env[k] = v.Value
	}
	return env
}

func isSecretName(name string) bool {
	for _, s := range []string{"TOKEN", "SECRET", "PASSWORD", "KEY"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// httpPort is the port of REPROVISION_HTTP_ADDR as the manifests set it, or
// its default in the bot's sources.
func httpPort(b *Bundle) (int, error) {
	addr, ok := b.env()["REPROVISION_HTTP_ADDR"]
	if !ok {
		addr = b.Source.Env["REPROVISION_HTTP_ADDR"].Default
	}
	if addr == "" || addr == "off" {
		return 0, fmt.Errorf("REPROVISION_HTTP_ADDR is %q: the probes need the HTTP listener", addr)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("REPROVISION_HTTP_ADDR %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return 0, fmt.Errorf("REPROVISION_HTTP_ADDR %q: port is not a number", addr)
	}
	return n, nil
}

// resolvePort turns a probe's or a Service's port (a number or a container
// port's name) into a number.
func resolvePort(c *corev1.Container, port intstr.IntOrString) (int, error) {
	if port.Type == intstr.Int {
		return int(port.IntVal), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("port %q is not a named port of the container", port.StrVal)
}

// CheckBot runs every rule of BotRules and of the bundle's variant.
func CheckBot(b *Bundle) []string {
	var p []string
	for _, r := range append(slices.Clip(BotRules), b.Variant.Rules...) {
		for _, msg := range r.Check(b) {
			p = append(p, r.Name+": "+msg)
		}
	}
	return p
}
