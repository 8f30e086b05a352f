package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/net/http/httpguts"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"

	"github.com/connaudit/connaudit/backend"
	"github.com/connaudit/connaudit/backend/archive"
	"github.com/connaudit/connaudit/backend/victorialogs"
)

const (
	defaultQueryURL = "http://127.0.0.1:9428"
	// defaultService is the VictoriaLogs Service of connaudit's manifests.
	defaultService = "connaudit/victorialogs:9428"
)

// backendFlags say where the trail is: in the files of --archive (an
// exported trail, read offline), else in VictoriaLogs: --server (or
// CONNAUDIT_QUERY_URL) directly, else the in-cluster Service through the
// API server's service proxy when a kubeconfig context exists, else
// http://127.0.0.1:9428. They are the one factory of the read commands'
// backend.
type backendFlags struct {
	kube     *genericclioptions.ConfigFlags
	archives []string
	server   string
	headers  []string
	caFile   string
	certFile string
	keyFile  string
	insecure bool
	service  string
}

func (b *backendFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&b.archives, "archive", nil, "read the trail from these files of `connaudit export` (JSON lines; repeatable, comma-separated) instead of a server: offline, no cluster needed")
	fs.StringVar(&b.server, "server", "", "VictoriaLogs URL (or a vlselect front end); env CONNAUDIT_QUERY_URL. Without it: the in-cluster Service through the API server (see --backend-service) when a kubeconfig context exists, else "+defaultQueryURL)
	fs.StringArrayVar(&b.headers, "header", nil, `HTTP header for the backend, "Name: value" (repeatable); env CONNAUDIT_QUERY_HEADERS, comma-separated`)
	fs.StringVar(&b.caFile, "server-ca", "", "PEM file of the CA that signed the backend's certificate (with an https --server)")
	fs.StringVar(&b.certFile, "server-cert", "", "PEM client certificate for the backend (with --server-key)")
	fs.StringVar(&b.keyFile, "server-key", "", "PEM client key for the backend")
	fs.BoolVar(&b.insecure, "server-insecure-skip-tls-verify", false, "do not verify the backend's certificate (insecure)")
	fs.StringVar(&b.service, "backend-service", defaultService, "NAMESPACE/SERVICE:PORT of VictoriaLogs in the cluster, reached through the API server's service proxy when no --server is given")
}

// offline reports whether the trail is read from an archive, not from the
// cluster's backend: the cluster's nodes of today say nothing of it.
func (b *backendFlags) offline() bool { return len(b.archives) > 0 }

// open returns the backend the flags name.
func (b *backendFlags) open() (backend.Backend, error) {
	if len(b.archives) > 0 {
		if b.server != "" || len(b.headers) > 0 || b.caFile != "" || b.certFile != "" || b.keyFile != "" || b.insecure {
			return nil, fmt.Errorf("--archive and --server (or --header, --server-…): give one, the trail is read from one place")
		}
		return archive.Open(b.archives...)
	}
	header, err := b.header()
	if err != nil {
		return nil, err
	}
	server := b.server
	if server == "" {
		server = os.Getenv("CONNAUDIT_QUERY_URL")
	}
	if server == "" {
		ctxName, ok, err := b.kubeContext()
		if err != nil {
			return nil, err
		}
		if ok {
			return b.openProxy(ctxName, header)
		}
		server = defaultQueryURL
	}
	client, err := b.tlsClient()
	if err != nil {
		return nil, err
	}
	hint := "is VictoriaLogs running there? `make run` starts one on " + defaultQueryURL +
		"; on a cluster, leave out --server to go through the API server"
	return newVictoriaLogs(victorialogs.Config{URL: server, Client: client, Header: header, Hint: hint})
}

// kubeContext returns the kubeconfig context to use, if there is one. As
// with kubectl, a --kubeconfig or --context that names nothing is an error,
// not a reason to read the trail from somewhere else.
func (b *backendFlags) kubeContext() (string, bool, error) {
	if path := b.kube.KubeConfig; path != nil && *path != "" {
		if _, err := os.Stat(*path); err != nil {
			return "", false, fmt.Errorf("--kubeconfig: %w", err)
		}
	}
	raw, err := b.kube.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return "", false, fmt.Errorf("load kubeconfig: %w", err)
	}
	name := raw.CurrentContext
	if b.kube.Context != nil && *b.kube.Context != "" {
		name = *b.kube.Context
		if _, ok := raw.Contexts[name]; !ok {
			return "", false, fmt.Errorf("--context %q: no such context in the kubeconfig (kubectl config get-contexts lists them)", name)
		}
	}
	if _, ok := raw.Contexts[name]; !ok || name == "" {
		return "", false, nil
	}
	return name, true, nil
}

func (b *backendFlags) openProxy(ctxName string, header http.Header) (backend.Backend, error) {
	ns, rest1, ok := strings.Cut(b.service, "/")
	name, port, ok2 := strings.Cut(rest1, ":")
	if !ok || !ok2 || ns == "" || name == "" || port == "" {
		return nil, fmt.Errorf("--backend-service %q: want NAMESPACE/SERVICE:PORT, e.g. %s", b.service, defaultService)
	}
	cfg, err := b.kube.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig context %q: %w", ctxName, err)
	}
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("make a client for kubeconfig context %q: %w", ctxName, err)
	}
	base, err := url.Parse(strings.TrimRight(cfg.Host, "/"))
	if err != nil {
		return nil, fmt.Errorf("API server address %q of context %q: %w", cfg.Host, ctxName, err)
	}
	if base.Scheme == "" {
		base, _ = url.Parse("https://" + cfg.Host)
	}
	base = base.JoinPath(cfg.APIPath, "api/v1/namespaces", ns, "services", name+":"+port, "proxy")
	hint := fmt.Sprintf("the service %s was reached through the API server of kubeconfig context %q; is connaudit's VictoriaLogs installed there "+
		"(--backend-service names another)? Where NetworkPolicies are enforced, the policy victorialogs-api-server must admit the API server's "+
		"address (README.md, Network policies). Or give --server", b.service, ctxName)
	denied := fmt.Sprintf("reading the trail through the API server needs get on services/proxy %s/%s:%s (the connaudit-reader Role of k8s/deploy; "+
		"an admin grants it with kubectl create rolebinding NAME -n %s --role=connaudit-reader --user=YOU)", ns, name, port, ns)
	return newVictoriaLogs(victorialogs.Config{URL: base.String(), Client: client, Header: header, Hint: hint, DeniedHint: denied})
}

func (b *backendFlags) header() (http.Header, error) {
	h := http.Header{}
	all := b.headers
	if env := os.Getenv("CONNAUDIT_QUERY_HEADERS"); env != "" {
		all = append(strings.Split(env, ","), all...)
	}
	for _, kv := range all {
		// The first ':' or '=' ends the name: values may hold either.
		sep := strings.IndexAny(kv, ":=")
		name := ""
		if sep > 0 {
			name = strings.TrimSpace(kv[:sep])
		}
		if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(kv[sep+1:]) {
			return nil, fmt.Errorf("--header %q (or in CONNAUDIT_QUERY_HEADERS): want \"Name: value\" or Name=value", kv)
		}
		h.Add(name, strings.TrimSpace(kv[sep+1:]))
	}
	return h, nil
}

func (b *backendFlags) tlsClient() (*http.Client, error) {
	if b.caFile == "" && b.certFile == "" && b.keyFile == "" && !b.insecure {
		return http.DefaultClient, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: b.insecure} //nolint:gosec // asked for by --server-insecure-skip-tls-verify
	if b.caFile != "" {
		pem, err := os.ReadFile(b.caFile)
		if err != nil {
			return nil, fmt.Errorf("--server-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--server-ca %s: no PEM certificate in it", b.caFile)
		}
		cfg.RootCAs = pool
	}
	if b.certFile != "" || b.keyFile != "" {
		if b.certFile == "" || b.keyFile == "" {
			return nil, fmt.Errorf("--server-cert and --server-key: give both")
		}
		cert, err := tls.LoadX509KeyPair(b.certFile, b.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--server-cert/--server-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}

// newVictoriaLogs is victorialogs.New as the interface: a nil *Backend must
// not become a non-nil backend.Backend.
func newVictoriaLogs(cfg victorialogs.Config) (backend.Backend, error) {
	b, err := victorialogs.New(cfg)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// openTrail is open for the commands that read records as stored (verify,
// export).
func (b *backendFlags) openTrail() (backend.TrailReader, error) {
	be, err := b.open()
	if err != nil {
		return nil, err
	}
	tr, ok := be.(backend.TrailReader)
	if !ok {
		return nil, fmt.Errorf("the backend %T cannot hand out records as stored", be)
	}
	return tr, nil
}
