package tests

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestHouseRulesResolve: every "house rule N" a comment cites is stated in
// CONTRIBUTING.md, so a reader can look it up.
func TestHouseRulesResolve(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../CONTRIBUTING.md")
	if err != nil {
		t.Fatal(err)
	}
	stated := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^ ?(\d+)\. \*\*`).FindAllStringSubmatch(string(doc), -1) {
		stated[m[1]] = true
	}
	cite := regexp.MustCompile(`(?i)house rules? (\d+)`)
	cited := 0
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || (!strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, ".sql")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range cite.FindAllStringSubmatch(string(b), -1) {
			cited++
			if !stated[m[1]] {
				t.Errorf("%s cites %q, which CONTRIBUTING.md does not state", path, m[0])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cited == 0 || len(stated) < 13 {
		t.Fatalf("found %d citations and %d stated rules; the test reads nothing", cited, len(stated))
	}
}
