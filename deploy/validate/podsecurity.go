package validate

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// PodRule is one control of the Pod Security Standards, as listed at
// https://kubernetes.io/docs/concepts/security/pod-security-standards/ (the
// "restricted" profile is the baseline controls plus its own). The rules
// here are at least as strict as the profile's newest version: the
// exemptions for Windows pods and for pods in a user namespace
// (hostUsers: false) are not taken, since this bot needs neither.
type PodRule struct {
	Name  string
	Check func(meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string
}

// container is what the rules need of a container, an init container or an
// ephemeral container.
type container struct {
	what      string // `container "bot"`
	sc        *corev1.SecurityContext
	ports     []corev1.ContainerPort
	probes    map[string]*corev1.Probe
	lifecycle *corev1.Lifecycle
}

func containersOf(spec *corev1.PodSpec) []container {
	var cs []container
	add := func(kind string, c corev1.Container) {
		cs = append(cs, container{
			what:      fmt.Sprintf("%s %q", kind, c.Name),
			sc:        c.SecurityContext,
			ports:     c.Ports,
			probes:    map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe},
			lifecycle: c.Lifecycle,
		})
	}
	for _, c := range spec.InitContainers {
		add("initContainer", c)
	}
	for _, c := range spec.Containers {
		add("container", c)
	}
	for _, c := range spec.EphemeralContainers {
		add("ephemeralContainer", corev1.Container(c.EphemeralContainerCommon))
	}
	return cs
}

var (
	// Capabilities a container may add under "baseline" (Docker's default set).
	baselineCapabilities = []string{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
		"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
	// Sysctls namespaced and isolated per pod ("safe").
	safeSysctls = []string{"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
		"net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
		"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
		"net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
		"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}
	seLinuxTypes = []string{"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
	// Volume sources "restricted" allows (the VolumeSource field names).
	restrictedVolumeSources = []string{"ConfigMap", "CSI", "DownwardAPI", "EmptyDir", "Ephemeral", "Image",
		"PersistentVolumeClaim", "Projected", "Secret"}
)

func isTrue(b *bool) bool { return b != nil && *b }

// RestrictedRules are the controls of Pod Security "restricted", the
// baseline ones first.
var RestrictedRules = []PodRule{
	{"baseline/HostProcess", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		if sc := spec.SecurityContext; sc != nil && sc.WindowsOptions != nil && isTrue(sc.WindowsOptions.HostProcess) {
			p = append(p, "pod: securityContext.windowsOptions.hostProcess must be unset or false")
		}
		for _, c := range containersOf(spec) {
			if c.sc != nil && c.sc.WindowsOptions != nil && isTrue(c.sc.WindowsOptions.HostProcess) {
				p = append(p, c.what+": securityContext.windowsOptions.hostProcess must be unset or false")
			}
		}
		return p
	}},
	{"baseline/Host Namespaces", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for name, on := range map[string]bool{"hostNetwork": spec.HostNetwork, "hostPID": spec.HostPID, "hostIPC": spec.HostIPC} {
			if on {
				p = append(p, "pod: "+name+" must be unset or false")
			}
		}
		slices.Sort(p)
		return p
	}},
	{"baseline/Privileged Containers", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, c := range containersOf(spec) {
			if c.sc != nil && isTrue(c.sc.Privileged) {
				p = append(p, c.what+": securityContext.privileged must be unset or false")
			}
		}
		return p
	}},
	{"baseline/Capabilities", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, c := range containersOf(spec) {
			if c.sc == nil || c.sc.Capabilities == nil {
				continue
			}
			for _, capability := range c.sc.Capabilities.Add {
				if !slices.Contains(baselineCapabilities, string(capability)) {
					p = append(p, fmt.Sprintf("%s: capability %s is not in the default set", c.what, capability))
				}
			}
		}
		return p
	}},
	{"baseline/HostPath Volumes", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, v := range spec.Volumes {
			if v.HostPath != nil {
				p = append(p, fmt.Sprintf("volume %q: hostPath is forbidden", v.Name))
			}
		}
		return p
	}},
	{"baseline/Host Ports", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, c := range containersOf(spec) {
			for _, port := range c.ports {
				if port.HostPort != 0 {
					p = append(p, fmt.Sprintf("%s: hostPort %d is forbidden", c.what, port.HostPort))
				}
			}
		}
		return p
	}},
	{"baseline/Host Probes and Lifecycle Hooks", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, c := range containersOf(spec) {
			for _, name := range sortedKeys(c.probes) {
				if pr := c.probes[name]; pr != nil {
					if pr.HTTPGet != nil && pr.HTTPGet.Host != "" {
						p = append(p, fmt.Sprintf("%s: %s.httpGet.host must be unset", c.what, name))
					}
					if pr.TCPSocket != nil && pr.TCPSocket.Host != "" {
						p = append(p, fmt.Sprintf("%s: %s.tcpSocket.host must be unset", c.what, name))
					}
				}
			}
			if c.lifecycle == nil {
				continue
			}
			for name, h := range map[string]*corev1.LifecycleHandler{"postStart": c.lifecycle.PostStart, "preStop": c.lifecycle.PreStop} {
				if h != nil && ((h.HTTPGet != nil && h.HTTPGet.Host != "") || (h.TCPSocket != nil && h.TCPSocket.Host != "")) {
					p = append(p, fmt.Sprintf("%s: lifecycle.%s host must be unset", c.what, name))
				}
			}
		}
		return p
	}},
	{"baseline/AppArmor", func(meta *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, k := range sortedKeys(meta.Annotations) {
			v := meta.Annotations[k]
			if strings.HasPrefix(k, corev1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix) &&
				v != "" && v != corev1.DeprecatedAppArmorBetaProfileRuntimeDefault && !strings.HasPrefix(v, corev1.DeprecatedAppArmorBetaProfileNamePrefix) {
				p = append(p, fmt.Sprintf("annotation %s: %q is not runtime/default or localhost/*", k, v))
			}
		}
		check := func(what string, a *corev1.AppArmorProfile) {
			if a != nil && a.Type != corev1.AppArmorProfileTypeRuntimeDefault && a.Type != corev1.AppArmorProfileTypeLocalhost {
				p = append(p, fmt.Sprintf("%s: appArmorProfile.type %q is not RuntimeDefault or Localhost", what, a.Type))
			}
		}
		if spec.SecurityContext != nil {
			check("pod", spec.SecurityContext.AppArmorProfile)
		}
		for _, c := range containersOf(spec) {
			if c.sc != nil {
				check(c.what, c.sc.AppArmorProfile)
			}
		}
		return p
	}},
	{"baseline/SELinux", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		check := func(what string, o *corev1.SELinuxOptions) {
			if o == nil {
				return
			}
			if !slices.Contains(seLinuxTypes, o.Type) {
				p = append(p, fmt.Sprintf("%s: seLinuxOptions.type %q is not allowed", what, o.Type))
			}
			if o.User != "" || o.Role != "" {
				p = append(p, what+": seLinuxOptions.user and .role must be unset")
			}
		}
		if spec.SecurityContext != nil {
			check("pod", spec.SecurityContext.SELinuxOptions)
		}
		for _, c := range containersOf(spec) {
			if c.sc != nil {
				check(c.what, c.sc.SELinuxOptions)
			}
		}
		return p
	}},
	{"baseline/proc Mount Type", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, c := range containersOf(spec) {
			if c.sc != nil && c.sc.ProcMount != nil && *c.sc.ProcMount != corev1.DefaultProcMount {
				p = append(p, fmt.Sprintf("%s: procMount %q must be unset or Default", c.what, *c.sc.ProcMount))
			}
		}
		return p
	}},
	{"baseline/Seccomp", func(meta *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, k := range sortedKeys(meta.Annotations) {
			v := meta.Annotations[k]
			if (k == corev1.SeccompPodAnnotationKey || strings.HasPrefix(k, corev1.SeccompContainerAnnotationKeyPrefix)) &&
				v != corev1.SeccompProfileRuntimeDefault && v != corev1.DeprecatedSeccompProfileDockerDefault && !strings.HasPrefix(v, "localhost/") {
				p = append(p, fmt.Sprintf("annotation %s: %q is not allowed", k, v))
			}
		}
		if sc := spec.SecurityContext; sc != nil && sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
			p = append(p, "pod: seccompProfile.type must not be Unconfined")
		}
		for _, c := range containersOf(spec) {
			if c.sc != nil && c.sc.SeccompProfile != nil && c.sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
				p = append(p, c.what+": seccompProfile.type must not be Unconfined")
			}
		}
		return p
	}},
	{"baseline/Sysctls", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		if spec.SecurityContext == nil {
			return nil
		}
		for _, s := range spec.SecurityContext.Sysctls {
			if !slices.Contains(safeSysctls, s.Name) {
				p = append(p, fmt.Sprintf("pod: sysctl %s is not a safe sysctl", s.Name))
			}
		}
		return p
	}},
	{"restricted/Volume Types", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, v := range spec.Volumes {
			src := reflect.ValueOf(v.VolumeSource)
			for i := 0; i < src.NumField(); i++ {
				if f := src.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
					if name := src.Type().Field(i).Name; !slices.Contains(restrictedVolumeSources, name) {
						p = append(p, fmt.Sprintf("volume %q: type %s is not allowed (only %s)", v.Name, name, strings.Join(restrictedVolumeSources, ", ")))
					}
				}
			}
		}
		return p
	}},
	{"restricted/Privilege Escalation", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, c := range containersOf(spec) {
			if c.sc == nil || c.sc.AllowPrivilegeEscalation == nil || *c.sc.AllowPrivilegeEscalation {
				p = append(p, c.what+": securityContext.allowPrivilegeEscalation must be false")
			}
		}
		return p
	}},
	{"restricted/Running as Non-root", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		podLevel := spec.SecurityContext != nil && isTrue(spec.SecurityContext.RunAsNonRoot)
		if spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && !podLevel {
			p = append(p, "pod: securityContext.runAsNonRoot must not be false")
		}
		for _, c := range containersOf(spec) {
			switch {
			case c.sc != nil && c.sc.RunAsNonRoot != nil && !*c.sc.RunAsNonRoot:
				p = append(p, c.what+": securityContext.runAsNonRoot must not be false")
			case !podLevel && (c.sc == nil || c.sc.RunAsNonRoot == nil):
				p = append(p, c.what+": runAsNonRoot must be true (on the pod or on every container)")
			}
		}
		return p
	}},
	{"restricted/Running as Non-root user", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		if sc := spec.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			p = append(p, "pod: securityContext.runAsUser must not be 0")
		}
		for _, c := range containersOf(spec) {
			if c.sc != nil && c.sc.RunAsUser != nil && *c.sc.RunAsUser == 0 {
				p = append(p, c.what+": securityContext.runAsUser must not be 0")
			}
		}
		return p
	}},
	{"restricted/Seccomp", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		ok := func(s *corev1.SeccompProfile) bool {
			return s.Type == corev1.SeccompProfileTypeRuntimeDefault || s.Type == corev1.SeccompProfileTypeLocalhost
		}
		var podLevel bool
		if sc := spec.SecurityContext; sc != nil && sc.SeccompProfile != nil {
			if podLevel = ok(sc.SeccompProfile); !podLevel {
				p = append(p, fmt.Sprintf("pod: seccompProfile.type %q is not RuntimeDefault or Localhost", sc.SeccompProfile.Type))
			}
		}
		for _, c := range containersOf(spec) {
			switch {
			case c.sc != nil && c.sc.SeccompProfile != nil:
				if !ok(c.sc.SeccompProfile) {
					p = append(p, fmt.Sprintf("%s: seccompProfile.type %q is not RuntimeDefault or Localhost", c.what, c.sc.SeccompProfile.Type))
				}
			case !podLevel:
				p = append(p, c.what+": seccompProfile.type must be RuntimeDefault or Localhost (on the pod or on every container)")
			}
		}
		return p
	}},
	{"restricted/Capabilities", func(_ *metav1.ObjectMeta, spec *corev1.PodSpec) (p []string) {
		for _, c := range containersOf(spec) {
			if c.sc == nil || c.sc.Capabilities == nil || !slices.Contains(c.sc.Capabilities.Drop, "ALL") {
				p = append(p, c.what+": securityContext.capabilities.drop must include ALL")
			}
			if c.sc != nil && c.sc.Capabilities != nil {
				for _, capability := range c.sc.Capabilities.Add {
					if capability != "NET_BIND_SERVICE" {
						p = append(p, fmt.Sprintf("%s: may add only NET_BIND_SERVICE, not %s", c.what, capability))
					}
				}
			}
		}
		return p
	}},
}

// CheckRestricted runs every rule of RestrictedRules.
func CheckRestricted(meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string {
	var p []string
	for _, r := range RestrictedRules {
		for _, msg := range r.Check(meta, spec) {
			p = append(p, r.Name+": "+msg)
		}
	}
	return p
}

// AdmissionVersions are the profile versions EvaluateAdmission checks: from
// v1.25 (Pod Security admission GA) up to the newest the plugin knows, so a
// namespace pinned to an older enforce-version admits the pod too.
func AdmissionVersions() []psapi.Version {
	var vs []psapi.Version
	for minor := 25; minor <= 40; minor++ {
		vs = append(vs, psapi.MajorMinorVersion(1, minor))
	}
	return append(vs, psapi.LatestVersion())
}

// EvaluateAdmission runs the pod through the PodSecurity admission plugin's
// own evaluator (k8s.io/pod-security-admission/policy, the code the API
// server runs) at the given level, at every version of AdmissionVersions.
func EvaluateAdmission(level psapi.Level, meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string {
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return []string{"pod-security-admission evaluator: " + err.Error()}
	}
	var p []string
	for _, v := range AdmissionVersions() {
		for _, r := range ev.EvaluatePod(psapi.LevelVersion{Level: level, Version: v}, meta, spec) {
			if !r.Allowed {
				msg := fmt.Sprintf("%s:%s: %s", level, v, r.ForbiddenReason)
				if r.ForbiddenDetail != "" {
					msg += " (" + r.ForbiddenDetail + ")"
				}
				if !slices.Contains(p, msg) {
					p = append(p, msg)
				}
			}
		}
	}
	return p
}
