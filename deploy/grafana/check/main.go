// Command grafana-check checks Grafana dashboards against Grafana's published dashboard schema, the
// generated Go types of github.com/grafana/grafana-foundation-sdk, and against a few rules of ours.
//
//	grafana-check FILE.json...
//
// Each file is decoded strictly: an unknown field, a wrong type or a missing required field anywhere
// is a problem, and each panel's options and fieldConfig.defaults.custom are decoded with the types of
// its own plugin (timeseries, stat, bargauge, heatmap...), each target with its datasource's query type.
// The schema's own constraints (Validate) follow, then the rules below, in the spirit of Grafana's
// dashboard-linter:
//
//   - the dashboard has a template variable "datasource" of type datasource for Prometheus, and every
//     panel and every target uses it: datasource {"type": "prometheus", "uid": "${datasource}"};
//   - every panel has a title, and every panel that is not a row a description;
//   - panel ids are unique, and every panel has a gridPos with x + w <= 24 columns;
//   - a counter (a metric name ending in _total) appears only directly inside rate(), irate() or
//     increase().
//
// It prints one line per problem and exits 1 when there was any (2 when a file cannot be read).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

const dsVariable = "${datasource}"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grafana-check FILE.json...")
		os.Exit(2)
	}
	// Without the plugins, panel options and targets would be decoded as untyped JSON, unchecked.
	plugins.RegisterDefaultPlugins()
	status := 0
	for _, path := range os.Args[1:] {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			status = 2
			continue
		}
		problems, panels := check(raw)
		for _, p := range problems {
			fmt.Printf("%s: %s\n", path, p)
		}
		if len(problems) > 0 {
			status = max(status, 1)
		} else {
			fmt.Printf("%s: ok (%d panels)\n", path, panels)
		}
	}
	os.Exit(status)
}

// check returns the problems of one dashboard and the number of panels it has.
func check(raw []byte) ([]string, int) {
	type rawPanel struct {
		Title       any             `json:"title"`
		FieldConfig json.RawMessage `json:"fieldConfig"`
	}
	var titles struct {
		Panels []struct {
			rawPanel
			Panels []rawPanel `json:"panels"` // of a collapsed row
		} `json:"panels"`
	}
	_ = json.Unmarshal(raw, &titles) // best effort: names the panels, finds their fieldConfig
	where := regexp.MustCompile(`^panels\[(\d+)\]\.(?:Panel\.|RowPanel\.)?`)
	name := func(e error) []string {
		var list cog.BuildErrors
		if !errors.As(e, &list) {
			return []string{e.Error()}
		}
		var out []string
		for _, be := range list {
			path := be.Path
			if m := where.FindStringSubmatch(path); m != nil {
				var i int
				fmt.Sscan(m[1], &i)
				title := ""
				if i < len(titles.Panels) {
					title = fmt.Sprint(titles.Panels[i].Title)
				}
				path = fmt.Sprintf("panel %q (panels[%d]): %s", title, i, path[len(m[0]):])
			}
			out = append(out, path+": "+be.Message)
		}
		return out
	}

	var problems []string
	var strict dashboard.Dashboard
	// The SDK's strict decoders return an empty cog.BuildErrors, not nil, when they found nothing; name()
	// turns that into no problem. Its callers take it for a failure and keep nothing of the panel, so the
	// strictly decoded dashboard has no panels left: Validate and the rules read a lenient decoding.
	if err := strict.UnmarshalJSONStrict(raw); err != nil {
		problems = append(problems, name(err)...)
	}
	// The SDK decodes a panel's fieldConfig leniently but for defaults.custom: decode it strictly too.
	fieldConfig := func(at string, p rawPanel) {
		if p.FieldConfig != nil && string(p.FieldConfig) != "null" {
			var fc dashboard.FieldConfigSource
			problems = append(problems, name(cog.MakeBuildErrors(at+".fieldConfig", fc.UnmarshalJSONStrict(p.FieldConfig)))...)
		}
	}
	for i, p := range titles.Panels {
		fieldConfig(fmt.Sprintf("panels[%d]", i), p.rawPanel)
		for j, nested := range p.Panels {
			fieldConfig(fmt.Sprintf("panels[%d].panels[%d]", i, j), nested)
		}
	}
	var d dashboard.Dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return append(problems, "cannot check further: "+err.Error()), len(titles.Panels)
	}
	if err := d.Validate(); err != nil {
		problems = append(problems, name(err)...)
	}
	return append(problems, rules(&d)...), len(titles.Panels)
}

func rules(d *dashboard.Dashboard) []string {
	var problems []string
	hasVariable := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == dashboard.VariableTypeDatasource &&
			v.Query != nil && v.Query.String != nil && *v.Query.String == "prometheus" {
			hasVariable = true
		}
	}
	if !hasVariable {
		problems = append(problems, `templating: no variable "datasource" of type datasource with query "prometheus"`)
	}
	ids := map[uint32]string{}
	seen := func(at string, id *uint32) {
		if id == nil {
			return
		}
		if other, dup := ids[*id]; dup {
			problems = append(problems, fmt.Sprintf("%s: id %d is also the id of %s", at, *id, other))
		}
		ids[*id] = at
	}
	grid := func(at string, g *dashboard.GridPos) {
		if g == nil {
			problems = append(problems, at+": no gridPos")
		} else if g.X+g.W > 24 {
			problems = append(problems, fmt.Sprintf("%s: gridPos x %d + w %d is wider than 24 columns", at, g.X, g.W))
		}
	}
	panel := func(at string, p *dashboard.Panel) {
		at = fmt.Sprintf("panel %q (%s)", deref(p.Title), at)
		if deref(p.Title) == "" || deref(p.Description) == "" {
			problems = append(problems, at+": needs a title and a description")
		}
		seen(at, p.Id)
		grid(at, p.GridPos)
		if p.Type == "text" {
			return // no queries, no datasource
		}
		if !usesVariable(p.Datasource) {
			problems = append(problems, at+": datasource is not "+dsVariable+" of type prometheus")
		}
		for i, t := range p.Targets {
			q, ok := t.(*prometheus.Dataquery)
			if !ok || !usesVariable(q.Datasource) {
				problems = append(problems, fmt.Sprintf("%s: targets[%d]: datasource is not %s of type prometheus", at, i, dsVariable))
				continue
			}
			for _, c := range countersOutsideRate(q.Expr) {
				problems = append(problems, fmt.Sprintf("%s: targets[%d]: counter %s outside rate(), irate() or increase()", at, i, c))
			}
		}
	}
	for i, item := range d.Panels {
		at := fmt.Sprintf("panels[%d]", i)
		switch {
		case item.RowPanel != nil:
			row := item.RowPanel
			rowAt := fmt.Sprintf("row %q (%s)", deref(row.Title), at)
			if deref(row.Title) == "" {
				problems = append(problems, rowAt+": needs a title")
			}
			seen(rowAt, &row.Id)
			grid(rowAt, row.GridPos)
			for j := range row.Panels {
				panel(fmt.Sprintf("%s.panels[%d]", at, j), &row.Panels[j])
			}
		case item.Panel != nil:
			panel(at, item.Panel)
		default:
			problems = append(problems, at+": no panel type")
		}
	}
	return problems
}

func usesVariable(ds *common.DataSourceRef) bool {
	return ds != nil && deref(ds.Type) == "prometheus" && deref(ds.Uid) == dsVariable
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// countersOutsideRate returns the metric names ending in _total in a PromQL expression whose innermost
// enclosing call is not rate, irate or increase. Strings, label matchers {...}, ranges [...], Grafana
// variables ($__range) and the label lists of by/without/on/ignoring/group_left/group_right are skipped.
func countersOutsideRate(expr string) []string {
	var bad []string
	var calls []string // per open "(", the identifier right before it ("" for a plain parenthesis)
	prev := ""
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(expr, i)
			prev = ""
		case c == '{' || c == '[':
			end := map[byte]byte{'{': '}', '[': ']'}[c]
			for i++; i < len(expr) && expr[i] != end; {
				if expr[i] == '"' || expr[i] == '\'' || expr[i] == '`' {
					i = skipString(expr, i)
				} else {
					i++
				}
			}
			i++
			prev = ""
		case c == '(':
			calls = append(calls, prev)
			prev = ""
			i++
		case c == ')':
			if len(calls) > 0 {
				calls = calls[:len(calls)-1]
			}
			prev = ""
			i++
		case c == '$' || c >= '0' && c <= '9' || c == '.':
			j := i + 1 // a number, a duration or a Grafana variable: never a metric name
			for j < len(expr) && (isWord(expr[j]) || expr[j] == '.') {
				j++
			}
			i, prev = j, ""
		case isWord(c):
			j := i
			for j < len(expr) && isWord(expr[j]) {
				j++
			}
			word := expr[i:j]
			inner := ""
			if len(calls) > 0 {
				inner = calls[len(calls)-1]
			}
			labels := strings.Contains(" by without on ignoring group_left group_right ", " "+inner+" ")
			if strings.HasSuffix(word, "_total") && !labels &&
				inner != "rate" && inner != "irate" && inner != "increase" {
				bad = append(bad, word)
			}
			i, prev = j, word
		case c == ' ' || c == '\t' || c == '\n':
			i++ // "rate (x[5m])" is a call too
		default:
			i, prev = i+1, ""
		}
	}
	return bad
}

func skipString(s string, i int) int {
	quote := s[i]
	for i++; i < len(s) && s[i] != quote; i++ {
		if s[i] == '\\' && quote != '`' {
			i++
		}
	}
	return i + 1
}

func isWord(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
