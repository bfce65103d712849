package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// progressBar draws "label  42% [########            ] 12.3 / 29.0 MB" on a
// terminal, redrawn in place; elsewhere (a pipe, a log) it prints nothing,
// so scripts get only the result lines.
type progressBar struct {
	w     io.Writer
	label string
	on    bool
	drawn bool
	last  int // per mille last drawn
}

func newProgressBar(w io.Writer, label string) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, label: label, on: ok && term.IsTerminal(int(f.Fd())), last: -1}
}

func (p *progressBar) update(done, total int64) {
	if !p.on || total <= 0 {
		return
	}
	pm := int(min(done, total) * 1000 / total)
	if pm == p.last {
		return
	}
	p.last = pm
	const width = 30
	n := pm * width / 1000
	fmt.Fprintf(p.w, "\r%s %3d%% [%s%s] %.1f / %.1f MB", p.label, pm/10,
		strings.Repeat("#", n), strings.Repeat(" ", width-n), float64(done)/1e6, float64(total)/1e6)
	p.drawn = true
}

// finish ends the bar's line.
func (p *progressBar) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
