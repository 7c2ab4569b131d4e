package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openmeshd/meshd/node"
)

const fappUsage = `Therapist:
meshd fapp profile [show]                        the profile, its commitment (for a trust anchor) and endorsements
meshd fapp profile set --verfahren VT,TP --alter erwachsene --setting einzel --kosten gkv,pkv
                       --modalitaet praxis,video --plz 80331 --lang de --document TEXT|@FILE [--endorsement HEX]...
                                                 (an existing profile: only the flags given change)
meshd fapp slot add --type probatorik --start 2026-12-01T10:00 --duration 50m [--setting S] [--modalitaet M]
meshd fapp slot rm ID | meshd fapp slot list
meshd fapp publish                               announce changes now (else after fapp.publish_delay)
meshd fapp requests                              reservation requests
meshd fapp confirm ID [--message TEXT] | meshd fapp decline ID [--message TEXT]
Patient:
meshd fapp search [--verfahren V] [--plz PREFIX] [--kosten K] [--modalitaet M] [--alter A] [--setting S]
                  [--type T] [--from DATE] [--to DATE] [--lang L] [--network [--wait D]]
                                                 local (the cache: nothing leaves this node) unless --network
meshd fapp results ID                            a network search's results so far
meshd fapp reserve SLOT --contact TEXT [--wait D]   (--contact - reads stdin)
meshd fapp status [ID] [--wait D]                your reservations
Trust anchor:
meshd fapp endorse THERAPIST_KEY COMMITMENT --verfahren V --alter A --until DATE
Other: meshd fapp stats | meshd fapp anchors
Sets are comma-separated: Verfahren VT,TP,AP,ST; Altersgruppe erwachsene,kinder-jugendliche;
Setting einzel,gruppe; Kostenträger gkv,pkv,beihilfe,selbstzahler; Modalität praxis,video,telefon;
slot types sprechstunde,probatorik,akutbehandlung,therapieplatz. Listings take --json.`

type fappOpts struct {
	verfahren, alter, setting, kosten, modalitaet, plz, lang, document string
	typ, start, from, to, contact, message, until                      string
	endorsements                                                       stringList
	duration, wait                                                     time.Duration
	network                                                            bool
	limit                                                              int
}

// cmdFAPP is `meshd fapp SUBCOMMAND`.
func cmdFAPP(ctx context.Context, s stdio, args []string) error {
	fl := newFlags(s, "fapp")
	fl.Usage = func() { fmt.Fprintln(s.err, "usage:\n"+fappUsage+"\n\nflags:"); fl.PrintDefaults() }
	var cf clientFlags
	cf.register(fl)
	asJSON := fl.Bool("json", false, "print JSON (listings: one object per line)")
	var o fappOpts
	fl.StringVar(&o.verfahren, "verfahren", "", "Verfahren: VT, TP, AP, ST (comma-separated)")
	fl.StringVar(&o.alter, "alter", "", "Altersgruppen: erwachsene, kinder-jugendliche")
	fl.StringVar(&o.setting, "setting", "", "Setting: einzel, gruppe")
	fl.StringVar(&o.kosten, "kosten", "", "Kostenträger: gkv, pkv, beihilfe, selbstzahler")
	fl.StringVar(&o.modalitaet, "modalitaet", "", "Modalität: praxis, video, telefon")
	fl.StringVar(&o.plz, "plz", "", "profile: the practice's PLZ (5 digits); search: a prefix (a network search takes at most 3 digits)")
	fl.StringVar(&o.lang, "lang", "", "profile: languages (ISO 639-1, comma-separated); search: one language (applied locally only)")
	fl.StringVar(&o.document, "document", "", "profile set: the Approbation (text, or @FILE); it stays on this node, only a commitment is published")
	fl.Var(&o.endorsements, "endorsement", "profile set: an endorsement (hex) from a trust anchor (repeatable; replaces the current ones)")
	fl.StringVar(&o.typ, "type", "", "slot add: sprechstunde, probatorik, akutbehandlung or therapieplatz; search: a set of them")
	fl.StringVar(&o.start, "start", "", "slot add: start, 2026-12-01T10:00 (local time) or RFC 3339; on the 5-minute grid")
	fl.DurationVar(&o.duration, "duration", 50*time.Minute, "slot add: duration (multiple of 5 minutes)")
	fl.StringVar(&o.from, "from", "", "search: slots starting from this date (2026-12-01) or time")
	fl.StringVar(&o.to, "to", "", "search: slots starting up to this date (inclusive) or before this time")
	fl.BoolVar(&o.network, "network", false, "search: also ask the mesh (anonymously; PLZ at most 3 digits)")
	fl.IntVar(&o.limit, "limit", 0, "search --network: announces wanted per answering node (1-16; 0: 8)")
	fl.DurationVar(&o.wait, "wait", 0, "search --network: wait this long for answers (default 15s); reserve, status ID: wait this long for the therapist's answer")
	fl.StringVar(&o.contact, "contact", "", "reserve: how the therapist reaches you (at most 160 bytes; only the therapist can read it; - reads stdin)")
	fl.StringVar(&o.message, "message", "", "confirm, decline: a message for the patient (confirm: address, how to prepare)")
	fl.StringVar(&o.until, "until", "", "endorse: last day the endorsement is valid (2027-12-31)")
	pos, err := parseInterleaved(fl, args)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if len(pos) == 0 {
		fl.Usage()
		return fmt.Errorf("%w: meshd fapp SUBCOMMAND", errUsage)
	}
	sub, pos := pos[0], pos[1:]
	usage := func(form string) error { return fmt.Errorf("%w: meshd fapp %s", errUsage, form) }
	c, err := newClient(cf)
	if err != nil {
		return err
	}
	switch sub {
	case "profile":
		if len(pos) == 0 || pos[0] == "show" {
			if len(pos) > 1 {
				return usage("profile [show]")
			}
			var v node.FAPPProfileView
			if err := c.do(ctx, "GET", "/v1/fapp/profile", nil, &v); err != nil {
				return err
			}
			return printProfile(s, v, *asJSON)
		}
		if pos[0] != "set" || len(pos) != 1 {
			return usage("profile set --verfahren ... (meshd fapp -h)")
		}
		return fappProfileSet(ctx, s, c, o, set, *asJSON)
	case "slot", "slots":
		sub2 := "list"
		if len(pos) > 0 {
			sub2, pos = pos[0], pos[1:]
		}
		switch sub2 {
		case "list", "ls":
			if len(pos) != 0 {
				return usage("slot list [--json]")
			}
			return getList(ctx, s, c, "/v1/fapp/slots", *asJSON, func(tw io.Writer, items []node.FAPPOwnSlotView) {
				fmt.Fprintln(tw, "ID\tSTART\tMIN\tTYPE\tSETTING\tMODALITÄT\tBOOKED\tPENDING")
				for _, v := range items {
					fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%v\t%d\n", v.ID, v.Start.Local().Format("2006-01-02 15:04"), v.DurationMinutes,
						v.Type, v.Setting, v.Modalitaet, v.Booked, v.Pending)
				}
			})
		case "add":
			if len(pos) != 0 || o.typ == "" || o.start == "" {
				return usage("slot add --type T --start TIME [--duration D] [--setting S] [--modalitaet M]")
			}
			start, err := parseLocalTime(o.start)
			if err != nil {
				return err
			}
			body := map[string]any{"type": o.typ, "start": start.UTC().Format(time.RFC3339), "duration_minutes": int(o.duration / time.Minute),
				"setting": o.setting, "modalitaet": o.modalitaet}
			if o.duration%time.Minute != 0 {
				return fmt.Errorf("--duration %s: whole minutes, a multiple of 5", o.duration)
			}
			var v node.FAPPOwnSlotView
			if err := c.do(ctx, "POST", "/v1/fapp/slots", body, &v); err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(s.out).Encode(v)
			}
			fmt.Fprintln(s.out, v.ID)
			return nil
		case "rm", "remove":
			if len(pos) != 1 {
				return usage("slot rm ID")
			}
			return c.do(ctx, "DELETE", "/v1/fapp/slots/"+url.PathEscape(pos[0]), nil, nil)
		}
		return usage("slot add|rm|list")
	case "publish":
		if len(pos) != 0 {
			return usage("publish")
		}
		var v node.FAPPProfileView
		if err := c.do(ctx, "POST", "/v1/fapp/publish", nil, &v); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(s.out).Encode(v)
		}
		fmt.Fprintf(s.err, "announced %d free slot(s)\n", v.FreeSlots)
		return nil
	case "requests":
		if len(pos) != 0 {
			return usage("requests [--json]")
		}
		return getList(ctx, s, c, "/v1/fapp/requests", *asJSON, func(tw io.Writer, items []node.FAPPRequestView) {
			fmt.Fprintln(tw, "ID\tSLOT\tSTART\tRECEIVED\tOUTCOME\tCONTACT")
			for _, v := range items {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", v.ID, v.Slot, v.SlotStart.Local().Format("2006-01-02 15:04"),
					v.Received.Local().Format("2006-01-02 15:04"), v.Outcome, orDash(oneLine(v.Contact)))
			}
		})
	case "confirm", "decline":
		if len(pos) != 1 {
			return usage(sub + " ID [--message TEXT]")
		}
		var v node.FAPPRequestView
		if err := c.do(ctx, "POST", "/v1/fapp/requests/"+url.PathEscape(pos[0])+"/"+sub, map[string]string{"message": o.message}, &v); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(s.out).Encode(v)
		}
		fmt.Fprintf(s.out, "%s %s\n", v.ID, v.Outcome)
		return nil
	case "search":
		if len(pos) != 0 {
			return usage("search [filters] [--network] [--json]")
		}
		return fappSearch(ctx, s, c, o, set, *asJSON)
	case "results":
		if len(pos) != 1 {
			return usage("results ID")
		}
		var v node.FAPPSearchView
		if err := c.do(ctx, "GET", "/v1/fapp/searches/"+url.PathEscape(pos[0]), nil, &v); err != nil {
			return err
		}
		return printResults(s, v, *asJSON)
	case "reserve":
		if len(pos) != 1 || o.contact == "" {
			return usage("reserve SLOT --contact TEXT (SLOT as meshd fapp search prints it)")
		}
		contact := o.contact
		if contact == "-" {
			b, err := io.ReadAll(io.LimitReader(s.in, 4096))
			if err != nil {
				return err
			}
			contact = strings.TrimSpace(string(b))
		}
		var v node.FAPPReservationView
		if err := c.do(ctx, "POST", "/v1/fapp/reservations", map[string]string{"slot": pos[0], "contact": contact}, &v); err != nil {
			return err
		}
		if o.wait > 0 {
			if err := c.do(ctx, "GET", fmt.Sprintf("/v1/fapp/reservations/%s?wait_seconds=%g", v.ID, o.wait.Seconds()), nil, &v); err != nil {
				return err
			}
		}
		if *asJSON {
			return json.NewEncoder(s.out).Encode(v)
		}
		fmt.Fprintln(s.out, v.ID)
		if v.Outcome == "pending" {
			fmt.Fprintf(s.err, "reservation sent anonymously; the therapist's answer comes back the same way: meshd fapp status %s --wait 10m\n", v.ID)
		} else {
			fmt.Fprintf(s.err, "%s%s\n", v.Outcome, prefixed(": ", v.Message))
		}
		return nil
	case "status":
		if len(pos) > 1 {
			return usage("status [ID] [--wait D]")
		}
		if len(pos) == 1 {
			var v node.FAPPReservationView
			if err := c.do(ctx, "GET", fmt.Sprintf("/v1/fapp/reservations/%s?wait_seconds=%g", url.PathEscape(pos[0]), o.wait.Seconds()), nil, &v); err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(s.out).Encode(v)
			}
			return printReservations(s, []node.FAPPReservationView{v})
		}
		var items []node.FAPPReservationView
		if err := c.do(ctx, "GET", "/v1/fapp/reservations", nil, &items); err != nil {
			return err
		}
		if *asJSON {
			return printJSONLines(s.out, items)
		}
		return printReservations(s, items)
	case "endorse":
		if len(pos) != 2 || o.verfahren == "" || o.alter == "" || o.until == "" {
			return usage("endorse THERAPIST_KEY COMMITMENT --verfahren V --alter A --until DATE")
		}
		var v map[string]string
		body := map[string]string{"therapist": pos[0], "commitment": pos[1], "verfahren": o.verfahren, "altersgruppen": o.alter, "valid_until": o.until}
		if err := c.do(ctx, "POST", "/v1/fapp/endorse", body, &v); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(s.out).Encode(v)
		}
		fmt.Fprintln(s.out, v["endorsement"])
		fmt.Fprintf(s.err, "hand this to the therapist (meshd fapp profile set --endorsement ...); nodes that trust you list in fapp.anchors:\n  \"%s NAME\"\n", v["anchor"])
		return nil
	case "stats":
		var v node.FAPPStatsView
		if err := c.do(ctx, "GET", "/v1/fapp/stats", nil, &v); err != nil {
			return err
		}
		enc := json.NewEncoder(s.out)
		if !*asJSON {
			enc.SetIndent("", "  ")
		}
		return enc.Encode(v)
	case "anchors":
		return getList(ctx, s, c, "/v1/fapp/anchors", *asJSON, func(tw io.Writer, items []node.FAPPAnchorView) {
			fmt.Fprintln(tw, "NAME\tID\tKEY")
			for _, v := range items {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, v.ID, v.Key)
			}
		})
	}
	return fmt.Errorf("%w: unknown subcommand %q\n%s", errUsage, sub, fappUsage)
}

// fappProfileSet sends the profile. An existing profile is the base: only
// the flags given change it.
func fappProfileSet(ctx context.Context, s stdio, c *client, o fappOpts, set map[string]bool, asJSON bool) error {
	body := map[string]any{}
	var cur node.FAPPProfileView
	if err := c.do(ctx, "GET", "/v1/fapp/profile", nil, &cur); err == nil {
		p := cur.Profile
		body["verfahren"], body["altersgruppen"], body["settings"] = p.Verfahren.String(), p.Altersgruppen.String(), p.Settings.String()
		body["kostentraeger"], body["modalitaeten"], body["plz"], body["languages"] = p.Kostentraeger.String(), p.Modalitaeten.String(), p.PLZ, p.Languages
	} else if !strings.Contains(err.Error(), "no therapist profile") {
		return err
	}
	for _, f := range []struct{ flag, key, val string }{
		{"verfahren", "verfahren", o.verfahren}, {"alter", "altersgruppen", o.alter}, {"setting", "settings", o.setting},
		{"kosten", "kostentraeger", o.kosten}, {"modalitaet", "modalitaeten", o.modalitaet}, {"plz", "plz", o.plz},
	} {
		if set[f.flag] {
			body[f.key] = f.val
		}
	}
	if set["lang"] {
		var langs []string
		for _, l := range strings.Split(o.lang, ",") {
			if l = strings.TrimSpace(l); l != "" {
				langs = append(langs, l)
			}
		}
		body["languages"] = langs
	}
	if _, ok := body["languages"]; !ok {
		body["languages"] = []string{"de"}
	}
	if set["document"] {
		doc := o.document
		if strings.HasPrefix(doc, "@") {
			b, err := readFileLimited(doc[1:], 4096)
			if err != nil {
				return err
			}
			doc = strings.TrimSpace(string(b))
		}
		body["document"] = doc
	}
	if set["endorsement"] {
		body["endorsements"] = []string(o.endorsements)
	}
	var v node.FAPPProfileView
	if err := c.do(ctx, "PUT", "/v1/fapp/profile", body, &v); err != nil {
		return err
	}
	if err := printProfile(s, v, asJSON); err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintln(s.err, "announced after fapp.publish_delay (meshd fapp publish: now)")
	}
	return nil
}

func readFileLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return b, nil
}

func fappSearch(ctx context.Context, s stdio, c *client, o fappOpts, set map[string]bool, asJSON bool) error {
	if !o.network && (set["wait"] || set["limit"]) {
		return fmt.Errorf("%w: --wait and --limit go with --network", errUsage)
	}
	wait := o.wait
	if o.network && !set["wait"] {
		wait = 15 * time.Second
	}
	body := map[string]any{"verfahren": o.verfahren, "altersgruppen": o.alter, "settings": o.setting, "kostentraeger": o.kosten,
		"modalitaeten": o.modalitaet, "slot_types": o.typ, "plz": o.plz, "from": o.from, "to": o.to, "language": o.lang,
		"limit": o.limit, "network": o.network, "wait_seconds": wait.Seconds()}
	var v node.FAPPSearchView
	if err := c.do(ctx, "POST", "/v1/fapp/search", body, &v); err != nil {
		return err
	}
	if err := printResults(s, v, asJSON); err != nil {
		return err
	}
	if v.Running && !asJSON {
		fmt.Fprintf(s.err, "network search %d is still collecting answers: meshd fapp results %d\n", v.ID, v.ID)
	}
	return nil
}

func printResults(s stdio, v node.FAPPSearchView, asJSON bool) error {
	if asJSON {
		return printJSONLines(s.out, v.Results)
	}
	tw := tabwriter.NewWriter(s.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tMIN\tTYPE\tPLZ\tVERFAHREN\tKOSTENTRÄGER\tMODALITÄT\tSPRACHEN\tTRUST\tSLOT")
	for _, r := range v.Results {
		trust := "UNVERIFIED (" + r.TrustNote + ")"
		if r.Verified {
			trust = "verified: " + r.Anchor
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Start.Local().Format("2006-01-02 15:04"), r.DurationMinutes, r.Type,
			r.Profile.PLZ, r.Profile.Verfahren, r.Profile.Kostentraeger, r.Modalitaet, strings.Join(r.Profile.Languages, ","), trust, r.Slot)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(v.Results) == 0 {
		fmt.Fprintln(s.err, "no matching slots")
	}
	return nil
}

func printProfile(s stdio, v node.FAPPProfileView, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(s.out).Encode(v)
	}
	p := v.Profile
	tw := tabwriter.NewWriter(s.out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "therapist key\t%s\nverfahren\t%s\naltersgruppen\t%s\nsettings\t%s\nkostenträger\t%s\nmodalitäten\t%s\nplz\t%s\nlanguages\t%s\n",
		v.Therapist, p.Verfahren, p.Altersgruppen, p.Settings, p.Kostentraeger, p.Modalitaeten, p.PLZ, strings.Join(p.Languages, ","))
	fmt.Fprintf(tw, "commitment\t%s\nslots\t%d (%d free)\n", v.Commitment, v.Slots, v.FreeSlots)
	if len(v.Endorsements) == 0 {
		fmt.Fprintf(tw, "endorsements\tnone: patients see this profile as UNVERIFIED\n")
	}
	for _, e := range v.Endorsements {
		fmt.Fprintf(tw, "endorsement\t%s (%s) %s/%s until %s\n", orDash(e.AnchorName), e.Anchor, e.Verfahren, e.Altersgruppen, e.ValidUntil.Format(time.DateOnly))
	}
	return tw.Flush()
}

func printReservations(s stdio, items []node.FAPPReservationView) error {
	tw := tabwriter.NewWriter(s.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTART\tOUTCOME\tATTEMPTS\tMESSAGE\tSLOT")
	for _, v := range items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", v.ID, v.SlotStart.Local().Format("2006-01-02 15:04"), v.Outcome, v.Attempts,
			orDash(oneLine(v.Message)), v.Slot)
	}
	return tw.Flush()
}

// parseLocalTime reads RFC 3339, or a date and time in local time
// ("2026-12-01T10:00", "2026-12-01 10:00").
func parseLocalTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: --start %q: want 2026-12-01T10:00 (local time) or RFC 3339", errUsage, s)
}

func oneLine(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ") }

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}
