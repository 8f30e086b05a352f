package advise

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// Render writes the policies as a YAML stream, with each policy's header
// comment above its document and each rule's evidence above the rule.
func Render(w io.Writer, policies []Policy) error {
	var buf bytes.Buffer
	for i, p := range policies {
		if i > 0 {
			buf.WriteString("---\n")
		}
		doc, err := policyNode(p)
		if err != nil {
			return fmt.Errorf("render policy %s: %w", p.NetworkPolicy.Name, err)
		}
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(doc); err != nil {
			return fmt.Errorf("render policy %s: %w", p.NetworkPolicy.Name, err)
		}
		if err := enc.Close(); err != nil {
			return err
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func policyNode(p Policy) (*yaml.Node, error) {
	// The API types marshal through their JSON tags, as kubectl prints them.
	text, err := sigsyaml.Marshal(p.NetworkPolicy)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	dropNulls(root)
	doc.HeadComment = comment(p.Header)
	if spec := mapValue(root, "spec"); spec != nil {
		attach(mapValue(spec, "egress"), p.Egress)
		attach(mapValue(spec, "ingress"), p.Ingress)
	}
	return &doc, nil
}

// dropNulls removes the empty fields that the API types marshal as null,
// such as metadata.creationTimestamp.
func dropNulls(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := n.Content[i+1]; v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue
			}
			kept = append(kept, n.Content[i], n.Content[i+1])
		}
		n.Content = kept
	}
	for _, c := range n.Content {
		dropNulls(c)
	}
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func attach(seq *yaml.Node, comments [][]string) {
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return
	}
	for i, item := range seq.Content {
		if i < len(comments) {
			item.HeadComment = comment(comments[i])
		}
	}
}

func comment(lines []string) string {
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		// A comment line cannot hold a line break: each would end the comment.
		b.WriteString("# " + strings.ReplaceAll(l, "\n", " "))
	}
	return b.String()
}
