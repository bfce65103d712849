package autoconfig

import (
	"fmt"
	"strings"
)

// dnsTTL is the TTL printed for every record: an hour, short enough to fix
// mistakes quickly, long enough not to matter for load.
const dnsTTL = 3600

// DNSRecords returns the zone-file lines an administrator publishes for the
// mail domain domain so that mail reaches Roost and clients find it: the MX
// record, the RFC 6186 SRV records (with RFC 8314 §5.1 _submissions) and
// CNAMEs for the autoconfig and autodiscover host names. Names are fully
// qualified; fields are tab-separated (name, TTL, class, type, data).
// domain should satisfy ValidDomain.
func DNSRecords(domain string, opts Options) string {
	o := opts.withDefaults()
	zone := fqdn(domain)
	host := fqdn(o.Hostname)

	var b strings.Builder
	fmt.Fprintf(&b, "; DNS records for the mail domain %s, served by Roost on %s\n", zone, host)
	fmt.Fprintf(&b, "; %s also needs A/AAAA records. Roost's TLS certificate must name it and,\n", host)
	fmt.Fprintf(&b, "; for HTTPS autoconfiguration, autoconfig.%s and autodiscover.%s\n", zone, zone)
	rec := func(name, typ, data string) {
		fmt.Fprintf(&b, "%s\t%d\tIN\t%s\t%s\n", name, dnsTTL, typ, data)
	}
	// srv prints an RFC 2782 SRV record. RFC 6186 §3.4: the priorities
	// across the IMAP and POP3 records tell clients which access protocol
	// the domain prefers: IMAP (0) keeps every device in sync, POP3 (10)
	// downloads and deletes. Implicit TLS ports come first (RFC 8314 §5.1).
	srv := func(service string, priority, port int, target string) {
		rec(service+"._tcp."+zone, "SRV", fmt.Sprintf("%d 1 %d %s", priority, port, target))
	}
	// absent says a service is decidedly not offered: target "." (RFC 2782,
	// RFC 6186 §3.4), so clients do not guess.
	absent := func(service string) {
		rec(service+"._tcp."+zone, "SRV", "0 0 0 .")
	}

	b.WriteString(";\n; Inbound mail (RFC 5321 §5.1)\n")
	rec(zone, "MX", "10 "+host)

	b.WriteString(";\n; Mail access (RFC 6186 §3.2, §3.3)\n")
	srv("_imaps", 0, o.IMAPSPort, host)
	srv("_imap", 5, o.IMAPPort, host)
	srv("_pop3s", 10, o.POP3SPort, host)
	srv("_pop3", 15, o.POP3Port, host)

	b.WriteString(";\n; Message submission (RFC 6186 §3.1, RFC 8314 §5.1)\n")
	switch {
	case !o.hasSubmission():
		b.WriteString("; No submission server is enabled or configured.\n")
		absent("_submissions")
		absent("_submission")
	default:
		var implicit, starttls *SubmissionPort
		for i, p := range o.Submission {
			if p.ImplicitTLS && implicit == nil {
				implicit = &o.Submission[i]
			} else if !p.ImplicitTLS && starttls == nil {
				starttls = &o.Submission[i]
			}
		}
		if implicit != nil {
			srv("_submissions", 0, implicit.Port, fqdn(o.SubmissionHost))
		} else {
			absent("_submissions")
		}
		if starttls != nil {
			srv("_submission", 0, starttls.Port, fqdn(o.SubmissionHost))
		} else {
			absent("_submission")
		}
	}

	b.WriteString(";\n; Client autoconfiguration: Thunderbird (autoconfig), Outlook (autodiscover)\n")
	rec("autoconfig."+zone, "CNAME", host)
	rec("autodiscover."+zone, "CNAME", host)
	return b.String()
}

// fqdn returns name lowercased with exactly one trailing dot.
func fqdn(name string) string {
	return normaliseHost(name) + "."
}
