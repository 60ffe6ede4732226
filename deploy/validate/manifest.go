package validate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is one decoded document of a manifest file.
type Object struct {
	Source string // file#n, n counting the file's non-empty documents from 1
	Kind   string // apiVersion and kind, e.g. "apps/v1 Deployment"
	Meta   *metav1.ObjectMeta
	Obj    any // *appsv1.Deployment, *corev1.ConfigMap, …
}

func (o Object) String() string {
	return fmt.Sprintf("%s (%s %s)", o.Source, o.Kind[strings.LastIndex(o.Kind, " ")+1:], o.Meta.Name)
}

// kinds are the API types the bot's manifests may use. Anything else is
// refused: there is no Ingress (nothing comes in from Slack) and no RBAC (the
// bot calls no Kubernetes API). Which kinds each variant needs is its Counts.
var kinds = map[string]func() (any, *metav1.ObjectMeta){
	"v1 Namespace":             func() (any, *metav1.ObjectMeta) { o := &corev1.Namespace{}; return o, &o.ObjectMeta },
	"v1 ConfigMap":             func() (any, *metav1.ObjectMeta) { o := &corev1.ConfigMap{}; return o, &o.ObjectMeta },
	"v1 Secret":                func() (any, *metav1.ObjectMeta) { o := &corev1.Secret{}; return o, &o.ObjectMeta },
	"v1 PersistentVolumeClaim": func() (any, *metav1.ObjectMeta) { o := &corev1.PersistentVolumeClaim{}; return o, &o.ObjectMeta },
	"v1 Service":               func() (any, *metav1.ObjectMeta) { o := &corev1.Service{}; return o, &o.ObjectMeta },
	"apps/v1 Deployment":       func() (any, *metav1.ObjectMeta) { o := &appsv1.Deployment{}; return o, &o.ObjectMeta },
	"policy/v1 PodDisruptionBudget": func() (any, *metav1.ObjectMeta) {
		o := &policyv1.PodDisruptionBudget{}
		return o, &o.ObjectMeta
	},
}

// Decode splits a multi-document YAML file and decodes every document
// strictly into its Kubernetes API type: YAML with a key given twice, a field
// the type does not have (matched case-sensitively, as the API server does),
// or a value of the wrong type is an error. Comment-only documents are
// skipped. All problems are reported, not only the first.
func Decode(source string, data []byte) ([]Object, error) {
	var (
		objs []Object
		errs []error
		n    int
	)
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s#%d: %w", source, n+1, err))
			n++
			continue
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue // only comments
		}
		n++
		where := fmt.Sprintf("%s#%d", source, n)
		var tm metav1.TypeMeta
		if err := json.Unmarshal(js, &tm); err != nil {
			errs = append(errs, fmt.Errorf("%s: not a Kubernetes object: %w", where, err))
			continue
		}
		kind := tm.APIVersion + " " + tm.Kind
		newObj, ok := kinds[kind]
		if !ok {
			why := "only " + strings.Join(sortedKeys(kinds), ", ") + " are expected here"
			if tm.Kind == "Ingress" {
				why = "no Ingress: the bot uses Socket Mode, nothing comes in from Slack"
			}
			errs = append(errs, fmt.Errorf("%s: apiVersion %q kind %q: %s", where, tm.APIVersion, tm.Kind, why))
			continue
		}
		obj, meta := newObj()
		strict, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", where, tm.Kind, err))
			continue
		}
		for _, e := range strict {
			errs = append(errs, fmt.Errorf("%s (%s %s): %w", where, tm.Kind, meta.Name, e))
		}
		objs = append(objs, Object{Source: where, Kind: kind, Meta: meta, Obj: obj})
	}
	if n == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s: no documents", source))
	}
	return objs, errors.Join(errs...)
}
