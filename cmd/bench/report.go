package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Stat is one figure measured over several runs: its median and its
// spread (the smallest and largest run).
type Stat struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

// statOf summarises the runs of one figure.
func statOf(runs []float64) Stat {
	if len(runs) == 0 {
		return Stat{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(runs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: med, Min: s[0], Max: s[len(s)-1], Runs: runs}
}

// spread formats a stat's range for people: "min-max".
func (s Stat) spread(prec int) string {
	if math.IsNaN(s.Median) {
		return "-"
	}
	return fmt.Sprintf("%.*f-%.*f", prec, s.Min, prec, s.Max)
}

func (s Stat) med(prec int) string {
	if math.IsNaN(s.Median) {
		return "not measured"
	}
	return fmt.Sprintf("%.*f", prec, s.Median)
}

// percentileMs returns the p-th percentile of ds in milliseconds.
func percentileMs(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	i = max(0, min(len(s)-1, i))
	return float64(s[i]) / 1e6
}

// Row is one line of the summary table.
type Row struct {
	Section, Figure, Unit string
	Stat                  Stat
	Prec                  int
	Target                string
	Verdict               string // "met", "missed", or "" when the figure has no target
}

// Report is everything measured in one run of the command.
type Report struct {
	Started, Finished time.Time
	Machine           Machine
	Quick             bool
	Runs              int
	Phases            []Phase
	Profiles          map[string]string // file -> what it shows
	Summary           []Row
	// Sections holds each section's prose and tables, in order.
	Sections []Section
	// JSON holds each section's machine-readable figures.
	JSON map[string]map[string]any
}

// Section is one part of the Markdown report.
type Section struct {
	Title, Body string
}

// Phase is how long one section took.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Err     string  `json:"error,omitempty"`
}

// put records a machine-readable figure; NaN (not measured) becomes null.
func (r *Report) put(section, key string, v any) {
	if r.JSON == nil {
		r.JSON = map[string]map[string]any{}
	}
	if r.JSON[section] == nil {
		r.JSON[section] = map[string]any{}
	}
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		v = nil
	}
	r.JSON[section][key] = v
}

// row adds a line to the summary table.
func (r *Report) row(section, figure, unit string, s Stat, prec int, target, verdict string) {
	r.Summary = append(r.Summary, Row{Section: section, Figure: figure, Unit: unit, Stat: s, Prec: prec, Target: target, Verdict: verdict})
}

// section adds a part of the Markdown report.
func (r *Report) section(title, body string) {
	r.Sections = append(r.Sections, Section{Title: title, Body: body})
}

// verdict says whether a figure met its target; a figure not measured
// neither meets nor misses.
func verdict(measured bool, ok bool) string {
	switch {
	case !measured:
		return "not measured"
	case ok:
		return "met"
	default:
		return "missed"
	}
}

// write saves report.json and report.md in dir.
func (r *Report) write(dir string) error {
	doc := map[string]any{
		"machine":     r.Machine,
		"started":     r.Started,
		"finished":    r.Finished,
		"quick":       r.Quick,
		"runs":        r.Runs,
		"phases":      r.Phases,
		"profiles":    r.Profiles,
		"summary":     summaryJSON(r.Summary),
		"total_secs":  math.Round(r.Finished.Sub(r.Started).Seconds()),
		"report_path": filepath.Join(dir, "report.md"),
	}
	for k, v := range r.JSON {
		doc[k] = v
	}
	// Sections that failed before recording anything still carry their keys.
	for _, k := range []string{"sfu", "booking", "search", "rx", "signalling"} {
		if _, ok := doc[k]; !ok {
			doc[k] = map[string]any{}
		}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.markdown()), 0o644)
}

func summaryJSON(rows []Row) []map[string]any {
	var out []map[string]any
	for _, x := range rows {
		m := map[string]any{"section": x.Section, "figure": x.Figure, "unit": x.Unit, "target": x.Target, "verdict": x.Verdict}
		if !math.IsNaN(x.Stat.Median) {
			m["median"], m["min"], m["max"] = x.Stat.Median, x.Stat.Min, x.Stat.Max
		}
		out = append(out, m)
	}
	return out
}

func (r *Report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Performance report\n\n")
	mode := ""
	if r.Quick {
		mode = " **Quick mode: tiny sizes, for the harness test only; these figures mean nothing.**"
	}
	fmt.Fprintf(&b, "Measured by `make bench` (`go run ./cmd/bench`) on %s, from %s to %s (%s).%s\n\n",
		r.Started.Format("2006-01-02"), r.Started.Format("15:04:05"), r.Finished.Format("15:04:05 MST"),
		r.Finished.Sub(r.Started).Round(time.Second), mode)
	fmt.Fprintf(&b, "- Machine: %s, %d cores (%s, %s); load average at start %s.\n", r.Machine.CPUModel, r.Machine.Cores, r.Machine.OS, r.Machine.GoVersion, r.Machine.Load1)
	fmt.Fprintf(&b, "- Every figure is the **median of %d runs**; the spread is the smallest and the largest run.\n", r.Runs)
	fmt.Fprintf(&b, "- The load generators run on the same machine as the service: on %d cores they compete with it for CPU, so throughputs are lower bounds of what the service alone would do.\n\n", r.Machine.Cores)

	b.WriteString("## Summary\n\n")
	b.WriteString("| Section | Figure | Median | Spread (min-max) | Target | Verdict |\n|---|---|---:|---:|---|---|\n")
	for _, x := range r.Summary {
		unit := ""
		if x.Unit != "" && !math.IsNaN(x.Stat.Median) {
			unit = " " + x.Unit
		}
		v := x.Verdict
		switch v {
		case "met":
			v = "**met**"
		case "missed":
			v = "**MISSED**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s%s | %s | %s | %s |\n", x.Section, x.Figure, x.Stat.med(x.Prec), unit, x.Stat.spread(x.Prec), x.Target, v)
	}
	b.WriteString("\n")
	for _, s := range r.Sections {
		fmt.Fprintf(&b, "## %s\n\n%s\n", s.Title, strings.TrimRight(s.Body, "\n")+"\n")
	}
	b.WriteString("## Profiles\n\n")
	if len(r.Profiles) == 0 {
		b.WriteString("No profiles were written in this run: `make bench PROFILE=1` writes CPU and allocation profiles of the SFU and booking runs to `out/bench/*.pprof` (read them with `go tool pprof -top <file>`).\n\n")
	} else {
		keys := make([]string, 0, len(r.Profiles))
		for k := range r.Profiles {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "- `%s`: %s\n", k, r.Profiles[k])
		}
		b.WriteString("\n")
	}
	b.WriteString("## Phases\n\n| Phase | Seconds | Error |\n|---|---:|---|\n")
	for _, p := range r.Phases {
		fmt.Fprintf(&b, "| %s | %.0f | %s |\n", p.Name, p.Seconds, p.Err)
	}
	return b.String()
}
