"""Drives Roost's IMAP server with Python's imaplib (imapd's interop test).

Connection details come from the environment; every answer goes to stdout
as one JSON object, which the Go test checks against what it delivered.
"""
import base64
import imaplib
import json
import os
import time


def b64(b):
    return base64.b64encode(b).decode()


def literal(data, index=0):
    """The bytes of the index-th literal in a FETCH answer."""
    parts = [d for d in data if isinstance(d, tuple)]
    return parts[index][1]


def text(data):
    out = []
    for d in data:
        if isinstance(d, tuple):
            out.append(d[0].decode(errors="replace"))
        elif d is not None:
            out.append(d.decode(errors="replace"))
    return out


out = {}
M = imaplib.IMAP4(os.environ["IMAP_HOST"], int(os.environ["IMAP_PORT"]))
out["greeting_caps"] = sorted(M.capabilities)
out["login"] = M.login(os.environ["IMAP_USER"], os.environ["IMAP_PASS"])[0]
typ, data = M.capability()
out["caps"] = data[0].decode()
out["namespace"] = text(M.namespace()[1])
out["list"] = text(M.list()[1])
out["create"] = M.create("Py/Sub")[0]
out["create_utf7"] = M.create('"Caf&AOk-"')[0]
out["list_py"] = text(M.list("\"\"", "Py*")[1])
out["subscribe"] = M.subscribe("Py/Sub")[0]
out["lsub"] = text(M.lsub("\"\"", "Py/*")[1])
out["rename"] = M.rename("Py", "Python")[0]
out["list_after_rename"] = text(M.list("\"\"", "Py*")[1])
out["delete"] = M.delete("Python/Sub")[0]
out["status"] = text(M.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY SIZE)")[1])

typ, data = M.select("INBOX")
out["select"] = [typ, data[0].decode()]
out["body"] = b64(literal(M.fetch("1", "(BODY.PEEK[])")[1]))
out["header"] = b64(literal(M.fetch("1", "(BODY.PEEK[HEADER])")[1]))
out["part_1_1"] = b64(literal(M.fetch("1", "(BODY.PEEK[1.1])")[1]))
out["part_2_mime"] = b64(literal(M.fetch("1", "(BODY.PEEK[2.MIME])")[1]))
out["part_3_text"] = b64(literal(M.fetch("1", "(BODY.PEEK[3.TEXT])")[1]))
out["partial"] = b64(literal(M.fetch("1", "(BODY.PEEK[]<5.12>)")[1]))
out["binary_2"] = b64(literal(M.fetch("1", "(BINARY.PEEK[2])")[1]))
out["bodystructure"] = text(M.fetch("1", "(BODYSTRUCTURE)")[1])
out["envelope"] = text(M.uid("FETCH", "1", "(UID FLAGS RFC822.SIZE ENVELOPE)")[1])
out["store"] = text(M.store("1", "+FLAGS", "(\\Flagged $Py)")[1])
out["store_silent"] = text(M.store("2", "+FLAGS.SILENT", "(\\Seen)")[1])
out["search_flagged"] = text(M.search(None, "FLAGGED")[1])
out["search_from"] = text(M.search(None, "FROM", '"bob sender"')[1])
out["search_or"] = text(M.search(None, "OR", "SEEN", "KEYWORD", "$Py")[1])
out["search_body"] = text(M.uid("SEARCH", "CHARSET", "UTF-8", "BODY", '"au lait"')[1])
out["search_not"] = text(M.uid("SEARCH", "NOT", "FLAGGED")[1])
msg = b"From: py@example.org\r\nSubject: from python\r\n\r\nsaved by imaplib\r\n"
typ, data = M.append("Sent", "(\\Seen)", imaplib.Time2Internaldate(time.time()), msg)
out["append"] = [typ, text(data)]
typ, data = M.copy("1", "Archive")
out["copy"] = [typ, text(data)]
typ, data = M.uid("MOVE", "2", "Trash")
out["move"] = [typ, text(data), text(M.response("COPYUID")[1])]
M.store("1", "+FLAGS", "\\Deleted")
typ, data = M.expunge()
out["expunge"] = [typ, text(data)]
typ, data = M.fetch("1:*", "(UID)")
out["left"] = text(data)
out["close"] = M.close()[0]
typ, data = M.select("Sent", readonly=True)
out["examine"] = typ
typ, data = M.store("1", "+FLAGS", "\\Deleted")
out["store_readonly"] = typ
out["logout"] = M.logout()[0]
print(json.dumps(out))
