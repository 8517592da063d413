package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
)

// suggest returns the candidate closest to given by edit distance, or ""
// when none is close: within 2 edits, or a third of the length for long
// names, or one a prefix of the other ("warning" suggests "warn"). Ties go
// to the alphabetically first candidate.
func suggest(given string, candidates []string) string {
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	limit := max(2, len(given)/3)
	best, bestDist := "", -1
	for _, c := range sorted {
		if c == given || c == "" {
			continue
		}
		d := levenshtein.Distance(given, c, nil)
		prefix := min(len(c), len(given)) >= 3 && (strings.HasPrefix(given, c) || strings.HasPrefix(c, given))
		if (d <= limit || prefix) && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// didYouMean returns ` Did you mean "x"?` for the closest candidate, or "".
func didYouMean(given string, candidates []string) string {
	if s := suggest(given, candidates); s != "" {
		return fmt.Sprintf(" Did you mean %q?", s)
	}
	return ""
}

// quoteList formats names as `"a", "b" and "c"`.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	switch len(q) {
	case 0:
		return "none"
	case 1:
		return q[0]
	default:
		return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
	}
}
