package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCIDocCommands: every `updraft …` command in docs/ci.md's ```sh and
// ```yaml blocks names a real command and parses with that command's own
// flag set (the one its --help prints), so the CI examples cannot drift
// from the CLI.
func TestCIDocCommands(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "ci.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := ciDocCommands(string(doc))
	if len(cmds) < 8 {
		t.Fatalf("found %d updraft commands in docs/ci.md, want the workflow's and the script's: %q", len(cmds), cmds)
	}
	sawScript := map[string]bool{}
	for _, words := range cmds {
		name, rest := commandOf(words)
		if name == "" {
			t.Errorf("docs/ci.md: %q is not an updraft command", strings.Join(words, " "))
			continue
		}
		sawScript[name] = true
		fs := flagSetOf(t, name)
		if fs == nil {
			continue
		}
		if _, err := parseFlags(fs, rest); err != nil {
			t.Errorf("docs/ci.md: updraft %s: %v", strings.Join(words, " "), err)
		}
	}
	for _, want := range []string{"bundle upload", "channel set", "channel preview"} {
		if !sawScript[want] {
			t.Errorf("docs/ci.md has no updraft %s command", want)
		}
	}
}

// TestCIDocCommandsCatchErrors: the checker refuses an unknown flag and an
// unknown command (it can fail).
func TestCIDocCommandsCatchErrors(t *testing.T) {
	doc := "```sh\nupdraft bundle upload dist/ --app X --versoin 1\nUPDRAFT_API_KEY=$K updraft chanel set x\n```\n"
	cmds := ciDocCommands(doc)
	if len(cmds) != 2 {
		t.Fatalf("extracted %q", cmds)
	}
	name, rest := commandOf(cmds[0])
	if fs := flagSetOf(t, name); name != "bundle upload" || fs == nil {
		t.Fatalf("first command: %q", name)
	} else if _, err := parseFlags(fs, rest); err == nil || !strings.Contains(err.Error(), "--versoin") {
		t.Fatalf("unknown flag accepted: %v", err)
	}
	if name, _ := commandOf(cmds[1]); name != "" {
		t.Fatalf("unknown command taken for %q", name)
	}
}

// ciDocCommands returns the words of each `updraft` command line in the
// document's sh and yaml blocks: continuation lines joined, a leading
// VAR=value (or "out=$(") dropped, the command cut at an unquoted |, ;, &,
// ) or redirection, and GitHub's ${{ … }} expressions replaced by a placeholder.
func ciDocCommands(doc string) [][]string {
	var out [][]string
	gh := regexp.MustCompile(`\$\{\{[^}]*\}\}`)
	start := regexp.MustCompile(`(^|[\s(])updraft\s`)
	in := false
	var pending string
	for _, line := range strings.Split(doc, "\n") {
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "```") {
			in = !in && (trim == "```sh" || trim == "```yaml")
			continue
		}
		if !in {
			continue
		}
		if strings.HasSuffix(trim, `\`) {
			pending += strings.TrimSuffix(trim, `\`) + " "
			continue
		}
		line, pending = pending+trim, ""
		if strings.HasPrefix(line, "#") {
			continue
		}
		line = gh.ReplaceAllString(line, "GH")
		loc := start.FindStringIndex(line)
		if loc == nil {
			continue
		}
		words := shellWords(line[loc[1]:])
		out = append(out, words)
	}
	return out
}

// shellWords splits s like a shell (quotes, backslashes), stopping at an
// unquoted |, ;, &, ), a redirection or a comment.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '|' || c == ';' || c == '&' || c == ')' || c == '>' || c == '<' || c == '#' && !inWord:
			if inWord {
				words = append(words, cur.String())
			}
			return words
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// commandOf finds the command (two words, else one) the words name among
// the CLI's commands; "" when none.
func commandOf(words []string) (string, []string) {
	for n := min(2, len(words)); n >= 1; n-- {
		name := strings.Join(words[:n], " ")
		if hasCommand(name) {
			return name, words[n:]
		}
	}
	return "", nil
}

func hasCommand(name string) bool {
	for _, d := range docs {
		if d.name == name {
			return true
		}
	}
	return false
}

// flagSetOf returns the flag set `updraft NAME --help` prints: the one the
// command parses its arguments with.
func flagSetOf(t *testing.T, name string) *flag.FlagSet {
	t.Helper()
	var seen *flag.FlagSet
	helpShown = func(fs *flag.FlagSet) { seen = fs }
	defer func() { helpShown = nil }()
	var out bytes.Buffer
	if err := run(context.Background(), append(strings.Fields(name), "--help"), &out, &out); err != nil || seen == nil {
		t.Errorf("updraft %s --help: %v", name, err)
		return nil
	}
	return seen
}
