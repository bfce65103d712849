package migrate

import "strings"

// specialUseNames maps the folder names mail apps and servers create, in
// English and the common translations, to their RFC 6154 attribute. Only a
// top-level folder is looked up, case-insensitively.
var specialUseNames = map[string]string{}

func init() {
	for use, names := range map[string][]string{
		`\Sent`: {"Sent", "Sent Items", "Sent Messages", "Sent Mail", "Sent Mails", "Gesendet", "Gesendete Objekte",
			"Gesendete Elemente", "Envoyés", "Messages envoyés", "Éléments envoyés", "Enviados", "Elementos enviados",
			"Inviati", "Posta inviata", "Elementi inviati", "Verzonden", "Verzonden items", "Skickat", "Skickade",
			"Sendt", "Sendte", "Lähetetyt", "Wysłane", "Odeslané", "Отправленные", "Enviadas", "Itens enviados"},
		`\Drafts`: {"Drafts", "Draft", "Entwürfe", "Brouillons", "Borradores", "Bozze", "Concepten", "Utkast",
			"Kladder", "Luonnokset", "Szkice", "Koncepty", "Черновики", "Rascunhos"},
		`\Trash`: {"Trash", "Deleted Items", "Deleted Messages", "Deleted", "Bin", "Papierkorb", "Gelöschte Objekte",
			"Gelöschte Elemente", "Corbeille", "Éléments supprimés", "Papelera", "Elementos eliminados", "Cestino",
			"Posta eliminata", "Prullenbak", "Verwijderde items", "Papperskorgen", "Borttaget", "Papirkurv",
			"Slettet", "Roskakori", "Kosz", "Koš", "Корзина", "Lixeira", "Lixo"},
		`\Junk`: {"Junk", "Spam", "Junk E-mail", "Junk Email", "Junk Mail", "Bulk Mail", "Unerwünscht", "Indésirables",
			"Courrier indésirable", "Correo no deseado", "Posta indesiderata", "Ongewenste e-mail", "Skräppost",
			"Søppelpost", "Roskaposti", "Wiadomości-śmieci", "Nevyžádaná pošta", "Спам", "Lixo eletrônico"},
		`\Archive`: {"Archive", "Archives", "Archiv", "Archivo", "Archivio", "Archief", "Arkiv", "Arkisto",
			"Archiwum", "Архив", "Arquivo"},
	} {
		for _, n := range names {
			specialUseNames[strings.ToLower(n)] = use
		}
	}
}

// SpecialUse returns the RFC 6154 special-use attribute a folder's name
// suggests (`\Sent`, `\Drafts`, `\Trash`, `\Junk`, `\Archive`), or "".
func SpecialUse(name string) string {
	if strings.Contains(name, Separator) {
		return ""
	}
	return specialUseNames[strings.ToLower(name)]
}
