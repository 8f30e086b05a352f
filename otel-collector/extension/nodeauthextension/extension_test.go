package nodeauthextension

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		sources map[string][]string
		token   string
	}{
		{map[string][]string{"Authorization": {"Bearer abc"}}, "abc"},         // HTTP
		{map[string][]string{"authorization": {"bearer abc.def"}}, "abc.def"}, // gRPC metadata
	} {
		if got, err := bearerToken(tc.sources); err != nil || got != tc.token {
			t.Errorf("%v: %q, %v", tc.sources, got, err)
		}
	}
	for _, bad := range []map[string][]string{nil, {"Authorization": {"Basic abc"}}, {"Authorization": {"Bearer "}}, {"X-Token": {"abc"}}} {
		if _, err := bearerToken(bad); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

func TestExpiry(t *testing.T) {
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"exp":1900000000,"sub":"x"}`))
	if exp, ok := expiry("h." + payload + ".s"); !ok || !exp.Equal(time.Unix(1900000000, 0)) {
		t.Errorf("expiry: %v %v", exp, ok)
	}
	for _, bad := range []string{"opaque", "a.!!.c", "h." + base64.RawURLEncoding.EncodeToString([]byte(`{}`)) + ".s"} {
		if _, ok := expiry(bad); ok {
			t.Errorf("%q: an expiry", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := createDefaultConfig().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	for _, tc := range []struct {
		mutate func(*Config)
		says   string
	}{
		{func(c *Config) { c.Audience = "" }, "audience"},
		{func(c *Config) { c.ServiceAccounts = nil }, "service_accounts"},
		{func(c *Config) { c.ServiceAccounts = []string{"agent"} }, "NAMESPACE/NAME"},
		{func(c *Config) { c.CacheTTL = -time.Second }, "cache_ttl"},
		{func(c *Config) { c.TokenFile = "" }, "token_file"},
	} {
		c := createDefaultConfig()
		tc.mutate(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("want an error naming %s, got %v", tc.says, err)
		}
	}
}
