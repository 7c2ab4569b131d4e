package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/openmeshd/meshd/node"
)

const channelUsage = `meshd channel [list]                                   channels this node holds
meshd channel create NAME [--signed | --announce]      a private channel; prints its id
meshd channel info CH
meshd channel invite CH [--uses N] [--ttl D] [--role R] [--approve]   prints an invite code
meshd channel join CODE [--wait D]                     ask the inviter for admission
meshd channel join --open NAME [--signed]              an open channel (NOT private)
meshd channel leave CH
meshd channel members CH
meshd channel requests CH                              join requests awaiting approval
meshd channel admit CH MEMBER... | reject CH MEMBER...
meshd channel role CH MEMBER member|admin|owner
meshd channel remove CH MEMBER...                      new epoch without them
meshd channel send CH TEXT                             TEXT - reads stdin
meshd channel history CH [--after SEQ] [--limit N] [--follow]
meshd channel catchup CH                               ask neighbours for missed messages
CH is a channel id or name; MEMBER a key, a contact name or an address.
Listings take --json (one object per line).`

// cmdChannel is `meshd channel SUBCOMMAND`.
func cmdChannel(ctx context.Context, s stdio, args []string) error {
	fl := newFlags(s, "channel")
	fl.Usage = func() { fmt.Fprintln(s.err, "usage:\n"+channelUsage+"\n\nflags:"); fl.PrintDefaults() }
	var cf clientFlags
	cf.register(fl)
	asJSON := fl.Bool("json", false, "print JSON (listings: one object per line)")
	var o channelOpts
	// One flag set for every subcommand, so flags may come anywhere (the
	// subcommand's own flags are named in the usage).
	fl.BoolVar(&o.signed, "signed", false, "create: every message carries its author's signature (+64 bytes each); join --open: the signed open channel")
	fl.BoolVar(&o.announce, "announce", false, "create: only owners and admins post (implies --signed)")
	fl.IntVar(&o.uses, "uses", 1, "invite: how many people may join with the code")
	fl.DurationVar(&o.ttl, "ttl", 24*time.Hour, "invite: how long the code is valid")
	fl.StringVar(&o.role, "role", "member", "invite: the joiner's role, member, admin or owner (owners only)")
	fl.BoolVar(&o.approve, "approve", false, "invite: join requests wait for `meshd channel admit`")
	fl.StringVar(&o.open, "open", "", "join: the open channel of this name (NOT private: anyone who knows the name reads it)")
	fl.DurationVar(&o.wait, "wait", 0, "join: wait up to this long for the inviter's answer; exit 1 if refused")
	fl.Uint64Var(&o.after, "after", 0, "history: only messages with a sequence number above this")
	fl.Uint64Var(&o.limit, "limit", 1000, "history: at most this many messages")
	fl.BoolVar(&o.follow, "follow", false, "history: keep printing new messages as they arrive")
	pos, err := parseInterleaved(fl, args)
	if err != nil {
		return err
	}
	sub := "list"
	if len(pos) > 0 {
		sub, pos = pos[0], pos[1:]
	}
	usage := func(form string) error { return fmt.Errorf("%w: meshd channel %s", errUsage, form) }
	need := func(n int, form string) error {
		if len(pos) != n {
			return usage(form)
		}
		return nil
	}
	c, err := newClient(cf)
	if err != nil {
		return err
	}
	chPath := func() string { return "/v1/channels/" + url.PathEscape(pos[0]) }
	printChannel := func(v node.ChannelView) error {
		if *asJSON {
			return json.NewEncoder(s.out).Encode(v)
		}
		return nil
	}
	switch sub {
	case "list", "ls":
		if err := need(0, "list [--json]"); err != nil {
			return err
		}
		return getList(ctx, s, c, "/v1/channels", *asJSON, func(tw io.Writer, items []node.ChannelView) {
			fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tROLE\tMEMBERS\tEPOCH\tPOLICY")
			for _, v := range items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", v.ID, v.Name, v.Status, orDash(v.Role), v.Members, v.Epoch, v.Policy)
			}
		})
	case "create":
		if err := need(1, "create NAME [--signed | --announce]"); err != nil {
			return err
		}
		policy := ""
		switch {
		case o.announce:
			policy = "announce"
		case o.signed:
			policy = "signed"
		}
		var v node.ChannelView
		if err := c.do(ctx, "POST", "/v1/channels", map[string]string{"name": pos[0], "policy": policy}, &v); err != nil {
			return err
		}
		if *asJSON {
			return printChannel(v)
		}
		fmt.Fprintln(s.out, v.ID)
		return nil
	case "info":
		if err := need(1, "info CH"); err != nil {
			return err
		}
		var v node.ChannelView
		if err := c.do(ctx, "GET", chPath(), nil, &v); err != nil {
			return err
		}
		if *asJSON {
			return printChannel(v)
		}
		tw := tabwriter.NewWriter(s.out, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "id\t%s\nname\t%s\npolicy\t%s\nstatus\t%s\nrole\t%s\nmembers\t%d\nepoch\t%d %s\njoin requests\t%d\n",
			v.ID, v.Name, v.Policy, v.Status, orDash(v.Role), v.Members, v.Epoch, v.EpochHash, v.JoinRequests)
		return tw.Flush()
	case "invite":
		if err := need(1, "invite CH [--uses N] [--ttl D] [--role R] [--approve]"); err != nil {
			return err
		}
		var v node.InviteView
		body := map[string]any{"uses": o.uses, "ttl_seconds": o.ttl.Seconds(), "role": o.role, "approve": o.approve}
		if err := c.do(ctx, "POST", chPath()+"/invites", body, &v); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(s.out).Encode(v)
		}
		fmt.Fprintln(s.out, v.Code)
		return nil
	case "join":
		body := map[string]any{"wait_seconds": o.wait.Seconds()}
		if o.open != "" {
			if err := need(0, "join --open NAME [--signed]"); err != nil {
				return err
			}
			body["open"], body["signed"] = o.open, o.signed
		} else {
			if len(pos) == 0 {
				return usage("join CODE [--wait D]")
			}
			// A code read aloud may come in several arguments.
			body["code"] = strings.Join(pos, "")
		}
		var v node.ChannelView
		if err := c.do(ctx, "POST", "/v1/channels/join", body, &v); err != nil {
			return err
		}
		if *asJSON {
			return printChannel(v)
		}
		fmt.Fprintln(s.out, v.ID)
		if v.Status == "joining" {
			fmt.Fprintln(s.err, "join request sent; waiting for the inviter (meshd channel list shows when it is active)")
		}
		if !v.Private {
			fmt.Fprintln(s.err, "note: an open channel is NOT private: anyone who knows its name reads it")
		}
		return nil
	case "leave":
		if err := need(1, "leave CH"); err != nil {
			return err
		}
		return c.do(ctx, "DELETE", chPath(), nil, nil)
	case "members", "requests":
		if err := need(1, sub+" CH [--json]"); err != nil {
			return err
		}
		return getList(ctx, s, c, chPath()+"/"+sub, *asJSON, func(tw io.Writer, items []node.MemberView) {
			fmt.Fprintln(tw, "ADDRESS\tROLE\tNAME\tFINGERPRINT")
			for _, m := range items {
				name := orDash(m.Name)
				if m.Self {
					name = "(this node)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Address, m.Role, name, m.Fingerprint)
			}
		})
	case "remove", "admit", "reject":
		if len(pos) < 2 {
			return usage(sub + " CH MEMBER...")
		}
		path := chPath() + "/members/remove"
		if sub != "remove" {
			path = chPath() + "/requests/" + sub
		}
		var v node.ChannelView
		if err := c.do(ctx, "POST", path, map[string]any{"members": pos[1:]}, &v); err != nil {
			return err
		}
		return printChannel(v)
	case "role":
		if err := need(3, "role CH MEMBER member|admin|owner"); err != nil {
			return err
		}
		var v node.ChannelView
		if err := c.do(ctx, "POST", chPath()+"/members/role", map[string]string{"member": pos[1], "role": pos[2]}, &v); err != nil {
			return err
		}
		return printChannel(v)
	case "send":
		if err := need(2, "send CH TEXT (TEXT - reads stdin)"); err != nil {
			return err
		}
		text := pos[1]
		if text == "-" {
			b, err := io.ReadAll(io.LimitReader(s.in, 1<<20))
			if err != nil {
				return err
			}
			text = strings.TrimSuffix(string(b), "\n")
		}
		var m node.ChannelMessage
		if err := c.do(ctx, "POST", chPath()+"/messages", map[string]string{"text": text}, &m); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(s.out).Encode(m)
		}
		fmt.Fprintln(s.out, m.Seq)
		return nil
	case "history":
		if err := need(1, "history CH [--after SEQ] [--limit N] [--follow] [--json]"); err != nil {
			return err
		}
		return channelHistory(ctx, s, c, pos[0], o, *asJSON)
	case "catchup":
		if err := need(1, "catchup CH"); err != nil {
			return err
		}
		var v node.ChannelView
		if err := c.do(ctx, "POST", chPath()+"/catchup", nil, &v); err != nil {
			return err
		}
		return printChannel(v)
	}
	return fmt.Errorf("%w: unknown subcommand %q\n%s", errUsage, sub, channelUsage)
}

type channelOpts struct {
	signed, announce, approve, follow bool
	uses                              int
	ttl, wait                         time.Duration
	role, open                        string
	after, limit                      uint64
}

// parseInterleaved parses flags that may stand before, between or after the
// positional arguments; everything after "--" is positional.
func parseInterleaved(fl *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := parseFlags(fl, args); err != nil {
			return nil, err
		}
		args = fl.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

func channelHistory(ctx context.Context, s stdio, c *client, ch string, o channelOpts, asJSON bool) error {
	print := func(m node.ChannelMessage) error {
		if asJSON {
			return json.NewEncoder(s.out).Encode(m)
		}
		from := m.From
		switch {
		case m.Own:
			from = "me"
		case m.FromName != "":
			from = m.FromName
		case from == "":
			from = "(anyone)"
		}
		mark := ""
		if !m.Verified && !m.Own && m.Private {
			mark = " (a member; unsigned)"
		}
		if !m.Private {
			mark += " [open channel]"
		}
		fmt.Fprintf(s.out, "%d  %s  %s%s\n    %s\n", m.Seq, m.Time.Local().Format("2006-01-02 15:04:05"), from, mark, strings.ReplaceAll(m.Text, "\n", "\n    "))
		return nil
	}
	var info node.ChannelView
	if err := c.do(ctx, "GET", "/v1/channels/"+url.PathEscape(ch), nil, &info); err != nil {
		return err
	}
	var events chan node.ChannelMessage
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.follow {
		events = make(chan node.ChannelMessage, 256)
		connected := make(chan struct{})
		go func() {
			defer close(events)
			_ = c.streamConnected(sctx, "/v1/events?types=channel-message", connected, func(ev node.Event) bool {
				var m node.ChannelMessage
				if raw, ok := ev.Data.(json.RawMessage); ok && json.Unmarshal(raw, &m) == nil && m.Channel == info.ID {
					select {
					case events <- m:
					case <-sctx.Done():
						return false
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
	last, remaining := o.after, o.limit
	for remaining > 0 {
		page := min(remaining, 10000)
		var items []node.ChannelMessage
		q := fmt.Sprintf("/v1/channels/%s/messages?after=%d&limit=%d", info.ID, last, page)
		if err := c.do(ctx, "GET", q, nil, &items); err != nil {
			return err
		}
		for _, m := range items {
			if err := print(m); err != nil {
				return err
			}
			last = max(last, m.Seq)
		}
		remaining -= uint64(len(items))
		if uint64(len(items)) < page {
			break
		}
	}
	if !o.follow {
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
