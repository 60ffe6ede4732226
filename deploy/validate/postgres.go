package validate

import (
	"fmt"
	"net/url"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// hostnameKey is the node label that tells nodes apart.
const hostnameKey = "kubernetes.io/hostname"

// PostgresRules are the PostgreSQL variant's own rules (deploy/postgres/):
// two or more replicas on one database, one serving (it holds the advisory
// lock) and the others standing by.
var PostgresRules = []Rule{
	{"PostgreSQL: two or more replicas, RollingUpdate with maxUnavailable 0 and a surge", func(b *Bundle) (p []string) {
		d := b.Deployment()
		if d == nil {
			return nil
		}
		r := replicas(d)
		if d.Spec.Replicas == nil || r < 2 {
			p = append(p, fmt.Sprintf("spec.replicas is %d (unset means 1), want at least 2: one serves, another stands by to take over", r))
		}
		if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
			return append(p, fmt.Sprintf("spec.strategy.type is %q, want RollingUpdate: a new pod starts as a standby, so old and new may overlap; Recreate stops every replica at once", d.Spec.Strategy.Type))
		}
		ru := d.Spec.Strategy.RollingUpdate
		if ru == nil || ru.MaxUnavailable == nil || ru.MaxSurge == nil {
			return append(p, "spec.strategy.rollingUpdate must set maxUnavailable: 0 and maxSurge: 1 (the defaults, 25% each, depend on the replica count)")
		}
		if n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, r, false); err != nil {
			p = append(p, "rollingUpdate.maxUnavailable: "+err.Error())
		} else if n != 0 {
			p = append(p, fmt.Sprintf("rollingUpdate.maxUnavailable %s is %d pod(s) at %d replicas, want 0: the rollout would stop an old pod before its replacement is up, leaving no standby to take over", ru.MaxUnavailable.String(), n, r))
		}
		if n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, r, true); err != nil {
			p = append(p, "rollingUpdate.maxSurge: "+err.Error())
		} else if n < 1 {
			p = append(p, fmt.Sprintf("rollingUpdate.maxSurge %s is 0 pods: with maxUnavailable 0 the rollout cannot start", ru.MaxSurge.String()))
		}
		return p
	}},
	{"PostgreSQL: the database URL from a Secret (secretKeyRef, not optional), postgres://, in no ConfigMap", func(b *Bundle) (p []string) {
		c := b.container()
		if c == nil {
			return nil
		}
		for _, cm := range all[*corev1.ConfigMap](b) {
			if _, ok := cm.Data["REPROVISION_DB"]; ok {
				p = append(p, fmt.Sprintf("ConfigMap %s holds REPROVISION_DB: the URL carries the database password; it belongs in a Secret (secretKeyRef)", cm.Name))
			}
		}
		db, ok := b.envVars()["REPROVISION_DB"]
		switch {
		case !ok:
			return append(p, "REPROVISION_DB is not set: each pod would open the image's SQLite default (/data/reprovision.db), a store of its own, and serve it")
		case db.Ref == nil:
			return append(p, fmt.Sprintf("REPROVISION_DB comes from %s, want env valueFrom.secretKeyRef: the URL carries the database password", db.From))
		}
		if isTrue(db.Ref.Optional) {
			p = append(p, "REPROVISION_DB's secretKeyRef must not be optional: without the Secret each pod would fall back to a SQLite store of its own (the image's /data/reprovision.db) and serve it")
		}
		sec := b.SecretNamed(db.Ref.Name)
		if sec == nil {
			return append(p, fmt.Sprintf("REPROVISION_DB: Secret %q is not in the manifests", db.Ref.Name))
		}
		raw, ok := secretData(sec)[db.Ref.Key]
		if !ok {
			return append(p, fmt.Sprintf("REPROVISION_DB: Secret %s has no key %q", sec.Name, db.Ref.Key))
		}
		if !strings.HasPrefix(raw, "postgres://") && !strings.HasPrefix(raw, "postgresql://") {
			return append(p, fmt.Sprintf("REPROVISION_DB (Secret %s key %s) is %q: the bot takes anything but a postgres:// or postgresql:// URL for a SQLite path", sec.Name, db.Ref.Key, raw))
		}
		u, err := url.Parse(raw)
		if err != nil {
			return append(p, fmt.Sprintf("REPROVISION_DB (Secret %s key %s): %v", sec.Name, db.Ref.Key, err))
		}
		if u.Host == "" {
			p = append(p, fmt.Sprintf("REPROVISION_DB (Secret %s key %s) names no host", sec.Name, db.Ref.Key))
		}
		if pw, set := u.User.Password(); set && !strings.Contains(pw, "REPLACE") {
			p = append(p, fmt.Sprintf("REPROVISION_DB (Secret %s key %s): the password is not a REPLACE… placeholder: never commit a real password", sec.Name, db.Ref.Key))
		}
		return p
	}},
	{"PostgreSQL: no PersistentVolumeClaim, nothing kept on a volume", func(b *Bundle) (p []string) {
		for _, pvc := range all[*corev1.PersistentVolumeClaim](b) {
			p = append(p, fmt.Sprintf("PersistentVolumeClaim %s: the store is the database; a ReadWriteOnce claim would also tie every replica to one node", pvc.Name))
		}
		d := b.Deployment()
		if d == nil {
			return p
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.PersistentVolumeClaim != nil || v.Ephemeral != nil {
				p = append(p, fmt.Sprintf("volume %q is a claim: the store is the database, nothing is kept on a volume", v.Name))
			}
		}
		return p
	}},
	{"PostgreSQL: a PodDisruptionBudget over the bot's pods that lets exactly one go at a time", func(b *Bundle) (p []string) {
		d := b.Deployment()
		pdbs := all[*policyv1.PodDisruptionBudget](b)
		if d == nil {
			return nil
		}
		if len(pdbs) == 0 {
			return []string{"no PodDisruptionBudget: a node drain or a cluster upgrade may evict every replica at once"}
		}
		podLabels := labels.Set(d.Spec.Template.Labels)
		r := replicas(d)
		for _, pdb := range pdbs {
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			switch {
			case err != nil:
				p = append(p, fmt.Sprintf("PodDisruptionBudget %s selector: %v", pdb.Name, err))
			case sel.Empty():
				p = append(p, fmt.Sprintf("PodDisruptionBudget %s has an empty selector: it would cover every pod of the namespace", pdb.Name))
			case !sel.Matches(podLabels):
				p = append(p, fmt.Sprintf("PodDisruptionBudget %s selector %s does not match the pod's labels %v: it protects nothing", pdb.Name, sel, podLabels))
			}
			down, err := disruptionsAllowed(pdb, r)
			switch {
			case err != nil:
				p = append(p, fmt.Sprintf("PodDisruptionBudget %s: %v", pdb.Name, err))
			case down > 1:
				p = append(p, fmt.Sprintf("PodDisruptionBudget %s lets %d of %d pods go at once, want at most 1: a drain could take the leader and its standby together", pdb.Name, down, r))
			case down < 1:
				p = append(p, fmt.Sprintf("PodDisruptionBudget %s lets no pod go at %d replicas: every node drain would block", pdb.Name, r))
			}
		}
		return p
	}},
	{"PostgreSQL: replicas spread over nodes, softly (ScheduleAnyway or preferred)", func(b *Bundle) (p []string) {
		d := b.Deployment()
		if d == nil {
			return nil
		}
		spec := d.Spec.Template.Spec
		podLabels := labels.Set(d.Spec.Template.Labels)
		matches := func(ls *metav1.LabelSelector) bool {
			sel, err := metav1.LabelSelectorAsSelector(ls)
			return err == nil && ls != nil && !sel.Empty() && sel.Matches(podLabels)
		}
		spread := false
		for _, t := range spec.TopologySpreadConstraints {
			if t.WhenUnsatisfiable != corev1.ScheduleAnyway {
				p = append(p, fmt.Sprintf("topologySpreadConstraint on %s is %s, want ScheduleAnyway: while a node is drained or down, the replacement would stay Pending and the bot run without a standby", t.TopologyKey, t.WhenUnsatisfiable))
			}
			if !matches(t.LabelSelector) {
				p = append(p, fmt.Sprintf("topologySpreadConstraint on %s: its labelSelector does not match the pod's labels %v", t.TopologyKey, podLabels))
			} else if t.TopologyKey == hostnameKey {
				spread = true
			}
		}
		if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
			if len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0 {
				p = append(p, "podAntiAffinity requiredDuringScheduling…: on a one-node cluster the second replica never starts, and with every node taken the rollout's surge pod cannot be placed (maxUnavailable 0: the rollout stalls); use preferredDuringScheduling…")
			}
			for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
				if w.PodAffinityTerm.TopologyKey == hostnameKey && matches(w.PodAffinityTerm.LabelSelector) {
					spread = true
				}
			}
		}
		if !spread {
			p = append(p, "the replicas are not spread over nodes: both may run on one node, whose failure then stops the bot; add a topologySpreadConstraint on "+hostnameKey+" with whenUnsatisfiable: ScheduleAnyway (or a preferred podAntiAffinity)")
		}
		return p
	}},
}

// disruptionsAllowed is how many of the Deployment's r pods, all healthy,
// the budget lets be evicted at once (percentages rounded up, as the
// disruption controller does).
func disruptionsAllowed(pdb *policyv1.PodDisruptionBudget, r int) (int, error) {
	minA, maxU := pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable
	switch {
	case minA != nil && maxU != nil:
		return 0, fmt.Errorf("minAvailable and maxUnavailable are both set; the API server refuses that")
	case maxU != nil:
		return intstr.GetScaledValueFromIntOrPercent(maxU, r, true)
	case minA != nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(minA, r, true)
		return max(r-n, 0), err
	default:
		return 0, fmt.Errorf("neither minAvailable nor maxUnavailable is set")
	}
}
