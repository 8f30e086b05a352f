// Package check replays a connection history against NetworkPolicies with
// an independent evaluator (kube-network-policies' EvaluatePolicyDirection)
// and reports what they would have denied.
package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Load reads the NetworkPolicies of files, directories (their *.yaml, *.yml
// and *.json files, not recursing) and "-" (stdin), as `kubectl apply -f`
// takes them. Documents of other kinds are skipped and named in skipped. A
// policy without a namespace gets namespace.
func Load(paths []string, stdin io.Reader, namespace string) (policies []*networkingv1.NetworkPolicy, skipped []string, err error) {
	if len(paths) == 0 {
		return nil, nil, errors.New("no policy given: -f FILE|DIR|-")
	}
	for _, p := range paths {
		if p == "-" {
			ps, sk, err := decode("stdin", stdin, namespace)
			if err != nil {
				return nil, nil, err
			}
			policies, skipped = append(policies, ps...), append(skipped, sk...)
			continue
		}
		files, err := expand(p)
		if err != nil {
			return nil, nil, err
		}
		for _, file := range files {
			f, err := os.Open(file)
			if err != nil {
				return nil, nil, fmt.Errorf("read policies: %w", err)
			}
			ps, sk, err := decode(file, f, namespace)
			f.Close()
			if err != nil {
				return nil, nil, err
			}
			policies, skipped = append(policies, ps...), append(skipped, sk...)
		}
	}
	if len(policies) == 0 {
		return nil, skipped, fmt.Errorf("no NetworkPolicy in %s", strings.Join(paths, ", "))
	}
	return policies, skipped, nil
}

func expand(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	var files []string
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".yaml", ".yml", ".json":
			if !e.IsDir() {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	slices.Sort(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("read policies: directory %s has no .yaml, .yml or .json file", path)
	}
	return files, nil
}

type typeMeta struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Items      []map[string]any `json:"items"` // of a List, decoded again one by one
}

func decode(name string, r io.Reader, namespace string) (policies []*networkingv1.NetworkPolicy, skipped []string, err error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for i := 1; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return policies, skipped, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		where := fmt.Sprintf("%s: document %d", name, i)
		ps, sk, err := decodeDoc(where, doc, namespace)
		if err != nil {
			return nil, nil, err
		}
		policies, skipped = append(policies, ps...), append(skipped, sk...)
	}
}

func decodeDoc(where string, doc []byte, namespace string) ([]*networkingv1.NetworkPolicy, []string, error) {
	var tm typeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	switch {
	case tm.Kind == "" && tm.APIVersion == "":
		// Only comments, or an empty map.
		var fields map[string]any
		if err := yaml.Unmarshal(doc, &fields); err == nil && len(fields) == 0 {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("%s: no kind and apiVersion", where)
	case tm.Kind == "List" || strings.HasSuffix(tm.Kind, "List"):
		var out []*networkingv1.NetworkPolicy
		var skipped []string
		for j, item := range tm.Items {
			b, err := yaml.Marshal(item)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: item %d: %w", where, j+1, err)
			}
			ps, sk, err := decodeDoc(fmt.Sprintf("%s, item %d", where, j+1), b, namespace)
			if err != nil {
				return nil, nil, err
			}
			out, skipped = append(out, ps...), append(skipped, sk...)
		}
		return out, skipped, nil
	case tm.Kind != "NetworkPolicy":
		return nil, []string{fmt.Sprintf("%s: %s %s is not a NetworkPolicy", where, tm.APIVersion, tm.Kind)}, nil
	case tm.APIVersion != "networking.k8s.io/v1":
		return nil, nil, fmt.Errorf("%s: NetworkPolicy of apiVersion %q: want networking.k8s.io/v1", where, tm.APIVersion)
	}
	np := &networkingv1.NetworkPolicy{}
	if err := yaml.UnmarshalStrict(doc, np); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	if np.Name == "" {
		return nil, nil, fmt.Errorf("%s: NetworkPolicy without metadata.name", where)
	}
	if np.Namespace == "" {
		np.Namespace = namespace
	}
	if err := Default(np); err != nil {
		return nil, nil, fmt.Errorf("%s: NetworkPolicy %s/%s: %w", where, np.Namespace, np.Name, err)
	}
	return []*networkingv1.NetworkPolicy{np}, nil, nil
}
