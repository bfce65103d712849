package autoconfig

import (
	"bytes"
	"html/template"
	"net/http"
)

// indexTemplate is the page at /. html/template escapes every value by
// context; only configuration is shown, never request input.
var indexTemplate = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.DisplayName}}: set up your mail app</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em; line-height: 1.5; }
input, button { font-size: 1em; padding: .4em; }
code { background: #eee; padding: 0 .2em; }
</style>
</head>
<body>
<h1>{{.DisplayName}}</h1>

<h2>iPhone, iPad and Mac (Apple Mail)</h2>
<p>Enter your email address to download a configuration profile, then install it:
on iPhone and iPad in <em>Settings → Profile Downloaded</em>, on a Mac in
<em>System Settings → Privacy &amp; Security → Profiles</em>. You will be asked for your password.</p>
<form method="get" action="/apple/profile.mobileconfig">
<label for="emailaddress">Email address</label>
<input type="email" id="emailaddress" name="emailaddress" required autocomplete="email" placeholder="you@{{.Domain}}">
<button type="submit">Download profile</button>
</form>

<h2>Thunderbird</h2>
<p>Choose <em>Account Settings → Account Actions → Add Mail Account</em> and enter your name,
email address and password: Thunderbird finds the settings by itself. If it asks, use:</p>
<ul>
<li>Incoming: IMAP, server <code>{{.Hostname}}</code>, port <code>{{.IMAPSPort}}</code>, SSL/TLS
(or POP3, port <code>{{.POP3SPort}}</code>, SSL/TLS)</li>
{{- if .SubmissionHost}}
<li>Outgoing: SMTP, server <code>{{.SubmissionHost}}</code>, port <code>{{.SubmissionPort}}</code>,
{{if eq .SubmissionPort 465}}SSL/TLS{{else}}STARTTLS{{end}}</li>
{{- end}}
<li>Username: your full email address; authentication: normal password</li>
</ul>
</body>
</html>
`))

// indexData is what the page shows.
type indexData struct {
	Options
	Domain string // an example domain for the placeholder
}

// index serves GET /: a page that explains the setup and offers the Apple
// profile through a GET form.
func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	domain := h.firstDomain()
	if domain == "" {
		domain = "example.org"
	}
	var buf bytes.Buffer
	if err := indexTemplate.Execute(&buf, indexData{Options: h.opts, Domain: domain}); err != nil {
		h.log.Error("autoconfig: render index page", "err", err)
		http.Error(w, "500 internal server error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page loads nothing and submits only to itself.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.Write(buf.Bytes())
}
