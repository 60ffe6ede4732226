package validate

import (
	"fmt"
	"net"
	"path"
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

// Bundle is everything the rules look at: the decoded manifests, the bot's
// environment contract and the Dockerfile.
type Bundle struct {
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

// BotRules are this bot's own rules for its manifests.
var BotRules = []Rule{
	{"objects: one each of Deployment, ConfigMap, Secret, PersistentVolumeClaim", func(b *Bundle) (p []string) {
		count := map[string]int{}
		for _, o := range b.Objects {
			count[o.Kind]++
		}
		for _, k := range []string{"apps/v1 Deployment", "v1 ConfigMap", "v1 Secret", "v1 PersistentVolumeClaim"} {
			if count[k] != 1 {
				p = append(p, fmt.Sprintf("%d × %s, want 1", count[k], k))
			}
		}
		for _, k := range []string{"v1 Namespace", "v1 Service"} {
			if count[k] > 1 {
				p = append(p, fmt.Sprintf("%d × %s, want at most 1", count[k], k))
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
	{"one replica, strategy Recreate", func(b *Bundle) (p []string) {
		d := b.Deployment()
		if d == nil {
			return nil
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			p = append(p, "spec.replicas must be 1: one process serves a store (the second exits at once)")
		}
		if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			p = append(p, fmt.Sprintf("spec.strategy.type is %q, want Recreate: a rolling update starts the new pod while the old one holds the store's lock", d.Spec.Strategy.Type))
		}
		if d.Spec.Strategy.RollingUpdate != nil {
			p = append(p, "spec.strategy.rollingUpdate must be unset with Recreate")
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
	{"probes: liveness /healthz, readiness /readyz, on the HTTP port", func(b *Bundle) (p []string) {
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
				p = append(p, fmt.Sprintf("%s path is %q, want %s", name, pr.HTTPGet.Path, want))
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
		check("readinessProbe", c.ReadinessProbe, "/readyz", true)
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
	{"the store on the PersistentVolumeClaim", func(b *Bundle) (p []string) {
		d, c := b.Deployment(), b.container()
		if d == nil || c == nil {
			return nil
		}
		db := b.env()["REPROVISION_DB"]
		if db == "" && b.Docker != nil {
			db = b.Docker.Facts().Env["REPROVISION_DB"]
		}
		if !path.IsAbs(db) {
			return []string{fmt.Sprintf("REPROVISION_DB %q must be an absolute path on the data volume", db)}
		}
		if b.Docker != nil {
			if img := b.Docker.Facts().Env["REPROVISION_DB"]; img != "" && img != db {
				p = append(p, fmt.Sprintf("REPROVISION_DB is %s in the ConfigMap but %s in the image", db, img))
			}
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range d.Spec.Template.Spec.Volumes {
			volumes[v.Name] = v
		}
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				p = append(p, fmt.Sprintf("volumeMount %q names no volume", m.Name))
			}
		}
		var mount *corev1.VolumeMount
		for i, m := range c.VolumeMounts {
			if strings.HasPrefix(db, strings.TrimSuffix(m.MountPath, "/")+"/") && (mount == nil || len(m.MountPath) > len(mount.MountPath)) {
				mount = &c.VolumeMounts[i]
			}
		}
		if mount == nil {
			return append(p, fmt.Sprintf("REPROVISION_DB %s is on no volume mount: with a read-only root it cannot be written, and it would not survive a restart", db))
		}
		if mount.ReadOnly || mount.SubPath != "" {
			p = append(p, fmt.Sprintf("the mount at %s must be writable and whole (no readOnly, no subPath): SQLite writes -wal, -shm and .lock beside the store", mount.MountPath))
		}
		v := volumes[mount.Name]
		if v.PersistentVolumeClaim == nil {
			return append(p, fmt.Sprintf("REPROVISION_DB %s is on volume %q, which is not a PersistentVolumeClaim: the store would be lost", db, mount.Name))
		}
		var pvc *corev1.PersistentVolumeClaim
		for _, o := range b.Objects {
			if c, ok := o.Obj.(*corev1.PersistentVolumeClaim); ok && c.Name == v.PersistentVolumeClaim.ClaimName {
				pvc = c
			}
		}
		if pvc == nil {
			return append(p, fmt.Sprintf("claim %q is not in the manifests", v.PersistentVolumeClaim.ClaimName))
		}
		for _, m := range pvc.Spec.AccessModes {
			if m != corev1.ReadWriteOnce && m != corev1.ReadWriteOncePod {
				p = append(p, fmt.Sprintf("PersistentVolumeClaim %s: access mode %s; want ReadWriteOnce or ReadWriteOncePod (one writer; SQLite needs a local filesystem)", pvc.Name, m))
			}
		}
		if len(pvc.Spec.AccessModes) == 0 {
			p = append(p, fmt.Sprintf("PersistentVolumeClaim %s has no access mode", pvc.Name))
		}
		if s, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || s.IsZero() {
			p = append(p, fmt.Sprintf("PersistentVolumeClaim %s requests no storage", pvc.Name))
		}
		return p
	}},
	{"environment: only variables the bot reads; every required one; tokens only in the Secret", func(b *Bundle) (p []string) {
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
		cm, sec := b.ConfigMap(), b.Secret()
		var cmName, secName string
		if cm != nil {
			cmName = cm.Name
			for _, k := range sortedKeys(cm.Data) {
				note("ConfigMap "+cm.Name, k)
				have[k] = true
				if isSecretName(k) {
					p = append(p, fmt.Sprintf("ConfigMap %s holds %s: tokens belong in the Secret", cm.Name, k))
				}
			}
			if len(cm.BinaryData) > 0 {
				p = append(p, fmt.Sprintf("ConfigMap %s: binaryData is not environment", cm.Name))
			}
		}
		if sec != nil {
			secName = sec.Name
			keys := map[string]string{}
			for k, v := range sec.Data {
				keys[k] = string(v)
			}
			for k, v := range sec.StringData {
				keys[k] = v
			}
			for _, k := range sortedKeys(keys) {
				note("Secret "+sec.Name, k)
				have[k] = true
				if !strings.Contains(keys[k], "REPLACE") {
					p = append(p, fmt.Sprintf("Secret %s: %s is not a REPLACE… placeholder: never commit a real token", sec.Name, k))
				}
			}
		}
		for _, e := range c.Env {
			note("container env", e.Name)
			have[e.Name] = true
		}
		var cmRef, secRef bool
		for _, ef := range c.EnvFrom {
			if ef.Prefix != "" {
				p = append(p, "envFrom with a prefix renames the variables: the bot would not see them")
			}
			switch {
			case ef.ConfigMapRef != nil:
				cmRef = ef.ConfigMapRef.Name == cmName && cmName != ""
				if isTrue(ef.ConfigMapRef.Optional) {
					p = append(p, "envFrom: the ConfigMap must not be optional")
				}
				if !cmRef {
					p = append(p, fmt.Sprintf("envFrom names ConfigMap %q, not in the manifests", ef.ConfigMapRef.Name))
				}
			case ef.SecretRef != nil:
				secRef = ef.SecretRef.Name == secName && secName != ""
				if isTrue(ef.SecretRef.Optional) {
					p = append(p, "envFrom: the Secret must not be optional (the bot cannot start without its tokens)")
				}
				if !secRef {
					p = append(p, fmt.Sprintf("envFrom names Secret %q, not in the manifests", ef.SecretRef.Name))
				}
			}
		}
		if !cmRef || !secRef {
			p = append(p, "the container must take its environment from both the ConfigMap and the Secret (envFrom)")
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

// env is the container's environment as the manifests set it.
func (b *Bundle) env() map[string]string {
	env := map[string]string{}
	if cm := b.ConfigMap(); cm != nil {
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	if c := b.container(); c != nil {
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
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

// CheckBot runs every rule of BotRules.
func CheckBot(b *Bundle) []string {
	var p []string
	for _, r := range BotRules {
		for _, msg := range r.Check(b) {
			p = append(p, r.Name+": "+msg)
		}
	}
	return p
}
