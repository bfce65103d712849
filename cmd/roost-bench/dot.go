package main

import "bytes"

// appendDotStuffed appends msg to dst as the content of an SMTP/LMTP DATA
// command, RFC 5321 §4.5.2: a line starting with "." gets a second one, a
// bare LF becomes CRLF, and the data ends with CRLF "." CRLF (a missing CRLF
// before it is added). The bytes are exactly those that net/textproto's
// DotWriter writes for msg followed by Close (FuzzDotStuffed checks this);
// DotWriter goes a byte at a time through a bufio.Writer, which cost the
// load tool more CPU per 10 KiB message than the whole rest of a delivery.
// Written by hand because it is a dozen lines over bytes.IndexByte.
func appendDotStuffed(dst, msg []byte) []byte {
	if len(msg) == 0 {
		return append(dst, "\r\n.\r\n"...) // as DotWriter: an empty line, then the dot
	}
	for len(msg) > 0 {
		// At the start of a line.
		if msg[0] == '.' {
			dst = append(dst, '.')
		}
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			// The last line has no LF: end it as DotWriter does, with a
			// lone LF after a CR it counts as one, else with CRLF.
			dst = append(dst, msg...)
			if oddCRRun(msg) {
				return append(dst, "\n.\r\n"...)
			}
			return append(dst, "\r\n.\r\n"...)
		}
		dst = append(dst, msg[:i]...)
		if !oddCRRun(msg[:i]) {
			dst = append(dst, '\r') // a bare LF
		}
		dst = append(dst, '\n')
		msg = msg[i+1:]
	}
	return append(dst, ".\r\n"...)
}

// oddCRRun reports whether line ends in an odd number of CRs. DotWriter
// pairs each CR with the byte after it, so in "\r\r\n" the LF is bare and
// gets a CR of its own, while in "\r\n" and "\r\r\r\n" it does not.
func oddCRRun(line []byte) bool {
	n := 0
	for n < len(line) && line[len(line)-1-n] == '\r' {
		n++
	}
	return n%2 == 1
}
