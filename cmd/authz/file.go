package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/authzd/authz/provider"
)

// fileConfig is the file named by AUTHZ_CONFIG (YAML, or JSON, which YAML
// reads too): any setting by its flag name, and the upstream identity
// providers, which have structure and secrets that environment variables
// carry badly. A flag overrides the environment, which overrides the file.
type fileConfig struct {
	path      string
	settings  map[string]string
	upstreams []provider.Upstream
}

// fileProvider is one entry of "providers". The secret is given inline or,
// better, as the name of an environment variable holding it.
type fileProvider struct {
	provider.Upstream `yaml:",inline"`
	ClientSecret      string `yaml:"client_secret"`
	ClientSecretEnv   string `yaml:"client_secret_env"`
}

func loadConfigFile(known []setting) (*fileConfig, error) {
	path := os.Getenv("AUTHZ_CONFIG")
	if path == "" {
		return &fileConfig{}, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("AUTHZ_CONFIG: %w", err)
	}
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("AUTHZ_CONFIG %s: %v", path, err)
	}
	fc := &fileConfig{path: path, settings: map[string]string{}}
	for key, node := range doc {
		if key == "providers" {
			var ps []fileProvider
			if err := node.Decode(&ps); err != nil {
				return nil, fmt.Errorf("AUTHZ_CONFIG %s: providers: %v", path, err)
			}
			for _, p := range ps {
				u := p.Upstream
				u.ClientSecret = p.ClientSecret
				if p.ClientSecretEnv != "" {
					u.ClientSecret = os.Getenv(p.ClientSecretEnv)
					if u.ClientSecret == "" {
						return nil, fmt.Errorf("AUTHZ_CONFIG %s: provider %q: environment variable %s (client_secret_env) is empty", path, u.Name, p.ClientSecretEnv)
					}
				}
				fc.upstreams = append(fc.upstreams, u)
			}
			continue
		}
		if !slices.ContainsFunc(known, func(s setting) bool { return s.flag == key }) {
			return nil, fmt.Errorf("AUTHZ_CONFIG %s: unknown setting %q (settings use their flag names, e.g. issuer, database-url)", path, key)
		}
		switch node.Kind {
		case yaml.ScalarNode:
			fc.settings[key] = node.Value
		case yaml.SequenceNode:
			var list []string
			if err := node.Decode(&list); err != nil {
				return nil, fmt.Errorf("AUTHZ_CONFIG %s: %s: %v", path, key, err)
			}
			fc.settings[key] = strings.Join(list, ",")
		default:
			return nil, fmt.Errorf("AUTHZ_CONFIG %s: %s must be a value or a list", path, key)
		}
	}
	return fc, nil
}
