package nodeauthextension

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"

	"github.com/connaudit/connaudit/otel-collector/internal/kubeapi"
)

// NodeAttribute is the client.AuthData attribute that names the node whose
// agent sent the request; the node_binding processor reads it.
const NodeAttribute = "k8s.node.name"

// nodeNameExtra is where a TokenReview names the node of a token bound to a
// pod (Kubernetes 1.32 and later).
const nodeNameExtra = "authentication.kubernetes.io/node-name"

// maxCached bounds the reviewed tokens remembered: one or two per node.
const maxCached = 1 << 14

type authenticator struct {
	cfg      *Config
	log      *zap.Logger
	accounts []string // usernames: system:serviceaccount:NS:NAME
	now      func() time.Time

	api *kubeapi.Client

	mu    sync.Mutex
	cache map[[sha256.Size]byte]identity
}

// identity is who a reviewed token belongs to.
type identity struct {
	node, user string
	until      time.Time
}

func newAuthenticator(cfg *Config, log *zap.Logger) *authenticator {
	a := &authenticator{cfg: cfg, log: log, now: time.Now, cache: map[[sha256.Size]byte]identity{}}
	for _, sa := range cfg.ServiceAccounts {
		ns, name, _ := strings.Cut(sa, "/")
		a.accounts = append(a.accounts, "system:serviceaccount:"+ns+":"+name)
	}
	return a
}

func (a *authenticator) Start(context.Context, component.Host) error {
	api, err := kubeapi.New(a.cfg.Config)
	if err != nil {
		return err
	}
	a.api = api
	return nil
}

func (a *authenticator) Shutdown(context.Context) error {
	if a.api != nil {
		a.api.CloseIdleConnections()
	}
	return nil
}

// Authenticate accepts a request whose bearer token the API server says
// belongs to an agent's ServiceAccount, bound to a pod on a node.
func (a *authenticator) Authenticate(ctx context.Context, sources map[string][]string) (context.Context, error) {
	token, err := bearerToken(sources)
	if err != nil {
		return ctx, err
	}
	id, err := a.identify(ctx, token)
	if err != nil {
		return ctx, err
	}
	info := client.FromContext(ctx)
	info.Auth = authData{node: id.node, user: id.user}
	return client.NewContext(ctx, info), nil
}

// bearerToken finds the Authorization header: canonical in HTTP headers,
// lower case in gRPC metadata.
func bearerToken(sources map[string][]string) (string, error) {
	for k, v := range sources {
		if !strings.EqualFold(k, "authorization") || len(v) == 0 {
			continue
		}
		scheme, token, ok := strings.Cut(v[0], " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
			return "", errors.New("authorization: want a Bearer token")
		}
		return token, nil
	}
	return "", errors.New("no bearer token: only connaudit agents, with their projected ServiceAccount token, may write the trail")
}

func (a *authenticator) identify(ctx context.Context, token string) (identity, error) {
	key := sha256.Sum256([]byte(token))
	now := a.now()
	a.mu.Lock()
	id, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(id.until) {
		return id, nil
	}
	id, err := a.review(ctx, token)
	if err != nil {
		return id, err
	}
	id.until = now.Add(a.cfg.CacheTTL)
	if exp, ok := expiry(token); ok && exp.Before(id.until) {
		id.until = exp
	}
	a.mu.Lock()
	if len(a.cache) >= maxCached {
		for k, v := range a.cache {
			if !now.Before(v.until) {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= maxCached {
			clear(a.cache)
		}
	}
	a.cache[key] = id
	a.mu.Unlock()
	return id, nil
}

type tokenReview struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Spec       tokenReviewSpec   `json:"spec"`
	Status     tokenReviewStatus `json:"status"`
}

type tokenReviewSpec struct {
	Token     string   `json:"token"`
	Audiences []string `json:"audiences"`
}

type tokenReviewStatus struct {
	Authenticated bool     `json:"authenticated"`
	Audiences     []string `json:"audiences"`
	Error         string   `json:"error"`
	User          struct {
		Username string              `json:"username"`
		Extra    map[string][]string `json:"extra"`
	} `json:"user"`
}

// review asks the API server who the token belongs to.
func (a *authenticator) review(ctx context.Context, token string) (identity, error) {
	resp, err := a.api.Do(ctx, http.MethodPost, "/apis/authentication.k8s.io/v1/tokenreviews", tokenReview{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview",
		Spec: tokenReviewSpec{Token: token, Audiences: []string{a.cfg.Audience}}})
	if err != nil {
		a.log.Warn("cannot review an agent's token: the API server is unreachable; the agent keeps its records spooled and retries", zap.Error(err))
		return identity{}, fmt.Errorf("token review: %w", err)
	}
	if resp.Code != http.StatusCreated && resp.Code != http.StatusOK {
		a.log.Warn("the API server refused a token review; the gateway needs create on tokenreviews (ClusterRole system:auth-delegator)",
			zap.Int("status", resp.Code), zap.ByteString("body", resp.Body))
		return identity{}, fmt.Errorf("token review: HTTP %d", resp.Code)
	}
	var tr tokenReview
	if err := json.Unmarshal(resp.Body, &tr); err != nil {
		return identity{}, fmt.Errorf("token review answer: %w", err)
	}
	st := tr.Status
	switch {
	case !st.Authenticated:
		return identity{}, fmt.Errorf("token refused by the API server: %s", st.Error)
	case !slices.Contains(st.Audiences, a.cfg.Audience):
		return identity{}, fmt.Errorf("token not issued for audience %q", a.cfg.Audience)
	case !slices.Contains(a.accounts, st.User.Username):
		return identity{}, fmt.Errorf("%s is not a connaudit agent (service_accounts: %s)", st.User.Username, strings.Join(a.cfg.ServiceAccounts, ", "))
	}
	nodes := st.User.Extra[nodeNameExtra]
	if len(nodes) != 1 || nodes[0] == "" {
		return identity{}, fmt.Errorf("the token of %s names no node: use a projected token of the agent's pod", st.User.Username)
	}
	return identity{node: nodes[0], user: st.User.Username}, nil
}

// expiry reads a JWT's exp claim, without checking anything: the API
// server already did.
func expiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0), true
}

// authData is what the pipeline learns of the sender.
type authData struct{ node, user string }

func (d authData) GetAttribute(name string) any {
	switch name {
	case NodeAttribute:
		return d.node
	case "subject":
		return d.user
	}
	return nil
}

func (d authData) GetAttributeNames() []string { return []string{NodeAttribute, "subject"} }
