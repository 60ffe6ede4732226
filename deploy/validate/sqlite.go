package validate

import (
	"fmt"
	"path"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// SQLiteRules are the SQLite variant's own rules (deploy/*.yaml): one
// process holds the store's lock, so one replica, Recreate, and the store
// on a volume that outlives the pod.
var SQLiteRules = []Rule{
	{"SQLite: one replica, strategy Recreate", func(b *Bundle) (p []string) {
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
	{"SQLite: the store on the PersistentVolumeClaim", func(b *Bundle) (p []string) {
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
}
