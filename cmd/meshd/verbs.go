package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openmeshd/meshd/node"
)

// listVerb is a verb that fetches one listing and prints it as a table or as
// JSON lines.
func listVerb[T any](name, path string, table func(w io.Writer, items []T)) func(context.Context, stdio, []string) error {
	return func(ctx context.Context, s stdio, args []string) error {
		fl := newFlags(s, name)
		var cf clientFlags
		cf.register(fl)
		asJSON := fl.Bool("json", false, "one JSON object per line")
		if err := parseFlags(fl, args); err != nil {
			return err
		}
		if fl.NArg() > 0 {
			return fmt.Errorf("%w: unexpected argument %q", errUsage, fl.Arg(0))
		}
		c, err := newClient(cf)
		if err != nil {
			return err
		}
		return getList(ctx, s, c, path, *asJSON, table)
	}
}

// getList fetches one listing and prints it as JSON lines or, through
// table, as aligned columns.
func getList[T any](ctx context.Context, s stdio, c *client, path string, asJSON bool, table func(w io.Writer, items []T)) error {
	var items []T
	if err := c.do(ctx, "GET", path, nil, &items); err != nil {
		return err
	}
	if asJSON {
		return printJSONLines(s.out, items)
	}
	tw := tabwriter.NewWriter(s.out, 2, 4, 2, ' ', 0)
	table(tw, items)
	return tw.Flush()
}

func cmdStatus(ctx context.Context, s stdio, args []string) error {
	fl := newFlags(s, "status")
	var cf clientFlags
	cf.register(fl)
	asJSON := fl.Bool("json", false, "print JSON")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	c, err := newClient(cf)
	if err != nil {
		return err
	}
	var st node.StatusView
	if err := c.do(ctx, "GET", "/v1/status", nil, &st); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(s.out).Encode(st)
	}
	tw := tabwriter.NewWriter(s.out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "address\t%s\n", st.Address)
	fmt.Fprintf(tw, "fingerprint\t%s\n", st.Fingerprint)
	if st.Name != "" {
		fmt.Fprintf(tw, "name\t%s\n", st.Name)
	}
	fmt.Fprintf(tw, "version\t%s\n", st.Version)
	fmt.Fprintf(tw, "uptime\t%s\n", (time.Duration(st.UptimeSeconds) * time.Second).String())
	fmt.Fprintf(tw, "links\t%d\n", st.Links)
	fmt.Fprintf(tw, "peers known\t%d (%d reachable)\n", st.Peers, st.Routes)
	fmt.Fprintf(tw, "outbox\t%d awaiting acknowledgement\n", st.Outbox)
	fmt.Fprintf(tw, "held for others\t%d messages, %d bytes\n", st.HeldMessages, st.HeldBytes)
	fmt.Fprintf(tw, "unread\t%d\n", st.Unread)
	fmt.Fprintf(tw, "store\t%d bytes\n", st.StoreBytes)
	return tw.Flush()
}

var cmdLinks = listVerb("links", "/v1/links", func(w io.Writer, items []node.LinkView) {
	fmt.Fprintln(w, "ID\tKIND\tPEER\tMTU\tUP\tQUEUED")
	for _, l := range items {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%d\n", l.ID, l.Kind, orDash(l.Peer), l.MTU, (time.Duration(l.UpSeconds) * time.Second).String(), l.Queued)
	}
})

var cmdPeers = listVerb("peers", "/v1/peers", func(w io.Writer, items []node.PeerView) {
	fmt.Fprintln(w, "ADDRESS\tNAME\tCLAIMED NAME (UNVERIFIED)\tREACHABLE\tNEIGHBOUR")
	for _, p := range items {
		fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%v\n", p.Address, orDash(p.Name), orDash(p.Claimed), p.Reachable, p.Neighbour)
	}
})

var cmdRoutes = listVerb("routes", "/v1/routes", func(w io.Writer, items []node.RouteView) {
	fmt.Fprintln(w, "DESTINATION\tNAME\tHOPS\tLINK\tVIA\tMETRIC\tEXPIRES")
	for _, r := range items {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%d\t%s\n", r.Destination, orDash(r.Name), r.Hops, r.Link, orDash(r.Via), r.Metric, (time.Duration(r.ExpiresIn) * time.Second).String())
	}
})

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdContacts(ctx context.Context, s stdio, args []string) error {
	// The subcommand may come before or after the flags.
	sub, subFirst := "", false
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args, subFirst = args[0], args[1:], true
	}
	fl := newFlags(s, "contacts")
	var cf clientFlags
	cf.register(fl)
	asJSON := fl.Bool("json", false, "print JSON")
	yes := fl.Bool("yes", false, "verify: mark verified, you compared the safety number with the other person")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	rest := fl.Args()
	if !subFirst && len(rest) > 0 {
		sub, rest = rest[0], rest[1:]
	}
	// Flags may also follow the subcommand's arguments.
	if err := parseFlags(fl, rest); err != nil {
		return err
	}
	if sub == "" {
		sub = "list"
	}
	c, err := newClient(cf)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return getList(ctx, s, c, "/v1/contacts", *asJSON, func(tw io.Writer, items []node.ContactView) {
			fmt.Fprintln(tw, "NAME\tADDRESS\tVERIFIED\tREACHABLE\tCLAIMED NAME (UNVERIFIED)")
			for _, c := range items {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%s\n", c.Name, c.Address, c.Verified, c.Reachable, orDash(c.Claimed))
			}
		})
	case "add":
		if len(fl.Args()) != 2 {
			return fmt.Errorf("%w: meshd contacts add NAME ADDRESS|KEY", errUsage)
		}
		var v node.ContactView
		if err := c.do(ctx, "POST", "/v1/contacts", map[string]string{"name": fl.Arg(0), "address": fl.Arg(1)}, &v); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(s.out).Encode(v)
		}
		fmt.Fprintf(s.out, "added %s = %s\n", v.Name, v.Address)
		return nil
	case "rm", "remove":
		if fl.NArg() != 1 {
			return fmt.Errorf("%w: meshd contacts rm NAME", errUsage)
		}
		return c.do(ctx, "DELETE", "/v1/contacts/"+pathEscape(fl.Arg(0)), nil, nil)
	case "verify":
		if fl.NArg() != 1 {
			return fmt.Errorf("%w: meshd contacts verify NAME [--yes]", errUsage)
		}
		var v node.ContactView
		path := "/v1/contacts/" + pathEscape(fl.Arg(0))
		method := "GET"
		if *yes {
			path, method = path+"/verify", "POST"
		}
		if err := c.do(ctx, method, path, nil, &v); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(s.out).Encode(v)
		}
		if v.SafetyNumber == "" {
			return fmt.Errorf("the key of %s is not known yet: its safety number cannot be shown until its announce arrives", v.Name)
		}
		fmt.Fprintf(s.out, "safety number with %s:\n\n  %s\n\n", v.Name, formatSafety(v.SafetyNumber))
		switch {
		case v.Verified:
			fmt.Fprintf(s.out, "%s is verified.\n", v.Name)
		default:
			fmt.Fprintf(s.out, "Compare it with %s (in person or on a call). If it matches, run:\n  meshd contacts verify %s --yes\n", v.Name, v.Name)
		}
		return nil
	}
	return fmt.Errorf("%w: meshd contacts [list|add|rm|verify]", errUsage)
}

func formatSafety(s string) string {
	g := strings.Fields(s)
	var lines []string
	for i := 0; i < len(g); i += 6 {
		lines = append(lines, strings.Join(g[i:min(i+6, len(g))], " "))
	}
	return strings.Join(lines, "\n  ")
}

func pathEscape(s string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F", "?", "%3F", "#", "%23", " ", "%20").Replace(s)
}

func cmdSend(ctx context.Context, s stdio, args []string) error {
	fl := newFlags(s, "send")
	var cf clientFlags
	cf.register(fl)
	asJSON := fl.Bool("json", false, "print JSON")
	wait := fl.Duration("wait", 0, "wait up to this long for delivery (e.g. 30s); exit 1 if not delivered")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	if fl.NArg() != 2 {
		return fmt.Errorf("%w: meshd send NAME|ADDRESS TEXT (TEXT - reads stdin)", errUsage)
	}
	text := fl.Arg(1)
	if text == "-" {
		b, err := io.ReadAll(io.LimitReader(s.in, 1<<20))
		if err != nil {
			return err
		}
		text = strings.TrimSuffix(string(b), "\n")
	}
	c, err := newClient(cf)
	if err != nil {
		return err
	}
	// Subscribe before sending so a quick delivery is not missed, and poll
	// the outbox now and then in case an event is lost.
	var states chan string
	var idc = make(chan uint64, 1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *wait > 0 {
		var tcancel context.CancelFunc
		sctx, tcancel = context.WithTimeout(sctx, *wait)
		defer tcancel()
		states = make(chan string, 16)
		connected := make(chan struct{})
		go func() {
			defer close(states)
			var id uint64
			_ = c.streamConnected(sctx, "/v1/events?types=status", connected, func(ev node.Event) bool {
				if id == 0 {
					select {
					case id = <-idc:
					default:
					}
				}
				var m node.OutMessage
				if raw, ok := ev.Data.(json.RawMessage); ok && json.Unmarshal(raw, &m) == nil && (id == 0 || m.ID == id) {
					if id != 0 {
						states <- m.State
					}
				}
				return true
			})
		}()
		select {
		case <-connected:
		case <-time.After(2 * time.Second):
		}
	}
	var res node.SendResult
	if err := c.do(ctx, "POST", "/v1/messages", map[string]string{"to": fl.Arg(0), "text": text}, &res); err != nil {
		return err
	}
	idc <- res.ID
	state := res.State
	if *wait > 0 {
		poll := time.NewTicker(2 * time.Second)
		defer poll.Stop()
		check := func() {
			var m node.OutMessage
			if err := c.do(ctx, "GET", fmt.Sprintf("/v1/outbox/%d", res.ID), nil, &m); err == nil {
				state = m.State
			}
		}
		check()
	wait:
		for !finalStateName(state) {
			select {
			case st, ok := <-states:
				if !ok {
					check()
					break wait
				}
				state = st
			case <-poll.C:
				check()
			}
		}
	}
	if *asJSON {
		res.State = state
		if err := json.NewEncoder(s.out).Encode(res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(s.out, "message %d to %s: %s\n", res.ID, res.To, state)
	}
	if *wait > 0 && state != node.StateDelivered {
		return fmt.Errorf("message %d not delivered within %s (state %s)", res.ID, *wait, state)
	}
	return nil
}

func finalStateName(s string) bool {
	return s == node.StateDelivered || s == node.StateExpired || s == node.StateFailed
}

func cmdInbox(ctx context.Context, s stdio, args []string) error {
	fl := newFlags(s, "inbox")
	var cf clientFlags
	cf.register(fl)
	asJSON := fl.Bool("json", false, "one JSON object per line")
	follow := fl.Bool("follow", false, "keep printing new messages as they arrive")
	unread := fl.Bool("unread", false, "only unread messages")
	markRead := fl.Bool("mark-read", false, "mark the printed messages read")
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	c, err := newClient(cf)
	if err != nil {
		return err
	}
	print := func(m node.InMessage) error {
		if *asJSON {
			if err := json.NewEncoder(s.out).Encode(m); err != nil {
				return err
			}
		} else {
			from := m.From
			if m.FromName != "" {
				from = m.FromName
			} else if m.Claimed != "" {
				from = fmt.Sprintf("%s (\"%s\", unverified)", m.From, m.Claimed)
			}
			mark := " "
			if !m.Read {
				mark = "*"
			}
			fmt.Fprintf(s.out, "%s %d  %s  %s\n    %s\n", mark, m.Seq, m.Received.Local().Format("2006-01-02 15:04:05"), from, strings.ReplaceAll(m.Text, "\n", "\n    "))
		}
		if *markRead && !m.Read {
			return c.do(ctx, "POST", fmt.Sprintf("/v1/inbox/%d/read", m.Seq), nil, nil)
		}
		return nil
	}
	var events chan node.InMessage
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *follow {
		events = make(chan node.InMessage, 64)
		go func() {
			defer close(events)
			_ = c.stream(sctx, "/v1/events?types=message", func(ev node.Event) bool {
				var m node.InMessage
				if raw, ok := ev.Data.(json.RawMessage); ok && json.Unmarshal(raw, &m) == nil {
					events <- m
				}
				return true
			})
		}()
		time.Sleep(50 * time.Millisecond)
	}
	q := "/v1/inbox"
	if *unread {
		q += "?unread=1"
	}
	var items []node.InMessage
	if err := c.do(ctx, "GET", q, nil, &items); err != nil {
		return err
	}
	var last uint64
	for _, m := range items {
		if err := print(m); err != nil {
			return err
		}
		last = max(last, m.Seq)
	}
	if !*follow {
		return nil
	}
	for m := range events {
		if m.Seq <= last {
			continue
		}
		last = m.Seq
		if err := print(m); err != nil {
			return err
		}
	}
	return ctx.Err()
}

var cmdOutbox = listVerb("outbox", "/v1/outbox", func(w io.Writer, items []node.OutMessage) {
	fmt.Fprintln(w, "ID\tTO\tSTATE\tATTEMPTS\tCREATED\tTEXT")
	now := time.Now()
	for _, m := range items {
		to := m.To
		if m.ToName != "" {
			to = m.ToName
		}
		state := m.State
		if m.Reason != "" {
			state += " (" + m.Reason + ")"
		}
		text := m.Text
		if len(text) > 40 {
			text = text[:37] + "..."
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\t%s\n", m.ID, to, state, m.Attempts, ago(m.Created, now), strings.ReplaceAll(text, "\n", " "))
	}
})
