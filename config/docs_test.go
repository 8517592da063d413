package config

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// schemaBlock is one block type of the schema, found by reflection.
type schemaBlock struct {
	path  string // e.g. proxy.listener.tls
	typ   string // e.g. tls
	attrs []string
}

// walkSchema lists the blocks below the schema struct ty, depth first.
func walkSchema(ty reflect.Type, path string, out *[]schemaBlock) {
	for i := 0; i < ty.NumField(); i++ {
		name, kind, ok := strings.Cut(ty.Field(i).Tag.Get("hcl"), ",")
		if !ok || kind != "block" {
			continue
		}
		ft := ty.Field(i).Type
		for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		b := schemaBlock{path: strings.TrimPrefix(path+"."+name, "."), typ: name}
		for j := 0; j < ft.NumField(); j++ {
			if n, k, _ := strings.Cut(ft.Field(j).Tag.Get("hcl"), ","); k == "optional" || k == "attr" {
				b.attrs = append(b.attrs, n)
			}
		}
		sort.Strings(b.attrs)
		*out = append(*out, b)
		walkSchema(ft, b.path, out)
	}
}

func schemaBlocks() []schemaBlock {
	var out []schemaBlock
	walkSchema(reflect.TypeOf(fileSchema{}), "", &out)
	return out
}

// docSection returns the text under the first heading of docs that names
// the block type typ in backquotes (as `typ` or `typ "LABEL"`), up to the
// next heading. Lines in fenced code blocks are never headings.
func docSection(docs, typ string) (string, bool) {
	lines := strings.Split(docs, "\n")
	heading := make([]bool, len(lines))
	inFence := false
	for i, l := range lines {
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
		}
		heading[i] = !inFence && strings.HasPrefix(l, "#")
	}
	for i, l := range lines {
		if !heading[i] || !(strings.Contains(l, "`"+typ+"`") || strings.Contains(l, "`"+typ+" ")) {
			continue
		}
		end := len(lines)
		for j := i + 1; j < len(lines); j++ {
			if heading[j] {
				end = j
				break
			}
		}
		return strings.Join(lines[i:end], "\n"), true
	}
	return "", false
}

// TestDocsDescribeSchema requires docs/config.md to have a section for each
// block type the decoder accepts, listing each of its attributes, so that
// the reference cannot fall behind the schema.
func TestDocsDescribeSchema(t *testing.T) {
	data, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	docs := string(data)
	blocks := schemaBlocks()
	if len(blocks) < 30 {
		t.Fatalf("found only %d blocks in the schema; is the walk broken?", len(blocks))
	}
	for _, b := range blocks {
		section, ok := docSection(docs, b.typ)
		if !ok {
			t.Errorf("docs/config.md has no heading for the %s block (%s)", b.typ, b.path)
			continue
		}
		for _, a := range b.attrs {
			if !strings.Contains(section, "`"+a+"`") {
				t.Errorf("docs/config.md section of %s does not describe `%s`", b.path, a)
			}
		}
	}
}

// TestDocsCompleteExample requires the complete example of docs/config.md
// to be testdata/full.hcl, which TestFullConfig loads.
func TestDocsCompleteExample(t *testing.T) {
	data, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile("testdata/full.hcl")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\n## Complete example\n")
	if !ok {
		t.Fatal("docs/config.md has no \"## Complete example\" section")
	}
	_, rest, ok = strings.Cut(rest, "```hcl\n")
	if !ok {
		t.Fatal("the complete example has no hcl code block")
	}
	example, _, ok := strings.Cut(rest, "```\n")
	if !ok {
		t.Fatal("the complete example's code block is not closed")
	}
	if example != string(full) {
		t.Error("the complete example in docs/config.md differs from config/testdata/full.hcl; copy the file into the docs")
	}
}

// TestFileHeaderMatchesSchema keeps the first decoding pass (fileHeader) in
// step with the full schema (fileSchema).
func TestFileHeaderMatchesSchema(t *testing.T) {
	tags := func(v any) []string {
		ty := reflect.TypeOf(v)
		var out []string
		for i := 0; i < ty.NumField(); i++ {
			out = append(out, ty.Field(i).Tag.Get("hcl"))
		}
		return out
	}
	if h, s := tags(fileHeader{}), tags(fileSchema{}); !reflect.DeepEqual(h, s) {
		t.Errorf("fileHeader tags %v\nfileSchema tags %v", h, s)
	}
}

// TestCheckAttrsCoverSchema checks that every health_check attribute is
// valid for at least one check type, and that checkAttrAllowed knows no
// attribute the schema lacks.
func TestCheckAttrsCoverSchema(t *testing.T) {
	ty := reflect.TypeOf(healthCheckBlock{})
	for i := 0; i < ty.NumField(); i++ {
		n, k, _ := strings.Cut(ty.Field(i).Tag.Get("hcl"), ",")
		if k == "optional" && len(checkAttrTypes(n)) == 0 {
			t.Errorf("health_check attribute %q is valid for no check type", n)
		}
	}
	if checkAttrAllowed(CheckTCP, "no_such_attribute") {
		t.Error("unknown attributes must not be allowed")
	}
}
