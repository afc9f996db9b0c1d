"""A small nftables simulator: exactly the subset lab.kube_proxy.nftables writes, no more.

    rs = Ruleset(local=["172.18.0.3", "127.0.0.0/8"], random=random.Random(1).random, clock=lambda: now)
    rs.load(masq_agent_rules(state)); rs.load(render(...)); rs.load(render_update(...))   # nft -f
    out = rs.trace(Packet("10.244.1.3", "10.96.0.100", "tcp", 80), "PREROUTING")
    out.dnat, out.masquerade, out.verdict          # the same Packet and Outcome as iptables_sim

load() is one transaction, all or nothing, and strict where nft is: a statement it does not know, a
rule on a chain that does not exist, a jump, goto or map verdict to a chain that does not exist, a
set that does not exist, deleting a chain that still has rules or is still referenced, deleting a
set a rule uses or an element that is not there, adding a map key again with another verdict.
trace() follows the first packet of a new connection through the base chains of every table, by
priority at each hook, as the kernel does: prerouting, then input (a local destination) or forward,
then postrouting; from a local process: output, then postrouting. NAT is set up once per hook:
after one nat chain's dnat or masquerade, the later nat chains of that hook are skipped.
"""
from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Callable, Iterable, Optional

from tests.unit.iptables_sim import Flow, Outcome, Packet

FIELDS = {("ip", "saddr"): "src", ("ip", "daddr"): "dst", ("meta", "l4proto"): "proto", ("th", "dport"): "dport"}
VERDICT_WORDS = {"accept", "drop", "reject", "return"}


@dataclass
class Op:
    kind: str
    args: tuple = ()
    negate: bool = False


@dataclass
class Rule:
    text: str
    ops: list[Op]

    def targets(self) -> set[str]:
        """Chains this rule may jump or go to."""
        out = set()
        for op in self.ops:
            if op.kind in ("jump", "goto"):
                out.add(op.args[0])
            elif op.kind == "numgen":
                out |= {v.split()[1] for v in op.args[1].values() if v.split()[0] in ("jump", "goto")}
        return out

    def sets(self) -> set[str]:
        return {op.args[-1] for op in self.ops if op.kind in ("set", "vmap", "update")}


@dataclass
class Chain:
    rules: list[Rule] = field(default_factory=list)
    hook: Optional[tuple[str, str, int]] = None      # (type, hook, priority) of a base chain


@dataclass
class Container:
    kind: str                                        # set | map
    interval: bool = False
    timeout: Optional[float] = None
    elements: dict[tuple[str, ...], Optional[str]] = field(default_factory=dict)
    dynamic: dict[str, float] = field(default_factory=dict)   # address -> expiry (update @set)


@dataclass
class Table:
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, Container] = field(default_factory=dict)


# --- parsing ---

def _braced(tokens: list[str]) -> list[str]:
    """The comma-separated items of "{ a, b }" at the head of tokens (consumed)."""
    assert tokens.pop(0) == "{", tokens
    end = tokens.index("}")
    body, tokens[:] = " ".join(tokens[:end]), tokens[end + 1:]
    return [item.strip() for item in body.split(",") if item.strip()]


def _selector(tokens: list[str]) -> tuple[str, ...]:
    """"ip daddr . meta l4proto . th dport" -> ("dst", "proto", "dport")."""
    fields = [FIELDS[(tokens.pop(0), tokens.pop(0))]]
    while tokens and tokens[0] == ".":
        tokens.pop(0)
        fields.append(FIELDS[(tokens.pop(0), tokens.pop(0))])
    return tuple(fields)


def _match(tokens: list[str]) -> Op:
    """A selector and what it is compared with: a map to look up, a set, an anonymous set, a value."""
    fields = _selector(tokens)
    if tokens[0] == "vmap":
        tokens.pop(0)
        name = tokens.pop(0)
        assert name.startswith("@"), name
        return Op("vmap", (fields, name[1:]))
    negate = tokens[0] == "!="
    if negate:
        tokens.pop(0)
    if tokens[0].startswith("@"):
        return Op("set", (fields, tokens.pop(0)[1:]), negate)
    if tokens[0] == "{":
        return Op("anon", (fields, tuple(_braced(tokens))), negate)
    return Op("eq", (fields, tokens.pop(0)), negate)


def parse_rule(text: str) -> Rule:
    tokens, ops = shlex.split(text), []
    while tokens:
        t = tokens[0]
        if (t, tokens[1] if len(tokens) > 1 else "") in FIELDS:
            ops.append(_match(tokens))
        elif t in ("tcp", "udp") and tokens[1] == "dport":
            ops += [Op("eq", (("proto",), t)), Op("eq", (("dport",), tokens[2]))]
            del tokens[:3]
        elif t == "ct":
            assert tokens[1:3] == ["state", "new"], text
            del tokens[:3]                              # every traced packet opens a connection
        elif t == "mark" and tokens[1] == "and":
            assert tokens[3] == "==", text
            ops.append(Op("mark_and", (int(tokens[2], 16), int(tokens[4], 16))))
            del tokens[:5]
        elif t == "mark" and tokens[1] == "set":
            assert tokens[2] == "mark" and tokens[3] in ("or", "xor"), text
            ops.append(Op("mark_" + tokens[3], (int(tokens[4], 16),)))
            del tokens[:5]
        elif t == "fib":
            negate = tokens[3] == "!="
            assert tokens[1] in ("saddr", "daddr") and tokens[2] == "type" and tokens[3 + negate] == "local", text
            ops.append(Op("fib_local", ("src" if tokens[1] == "saddr" else "dst",), negate))
            del tokens[:4 + negate]
        elif t == "numgen":
            assert tokens[1:3] == ["random", "mod"] and tokens[4] == "vmap", text
            n = int(tokens[3])
            del tokens[:5]
            spread = dict(item.split(" : ", 1) for item in _braced(tokens))
            assert sorted(int(k) for k in spread) == list(range(n)), text
            ops.append(Op("numgen", (n, {int(k): v for k, v in spread.items()})))
        elif t == "update":
            name = tokens[1]
            del tokens[:2]
            assert name.startswith("@") and _braced(tokens) == ["ip saddr"], text
            ops.append(Op("update", (name[1:],)))
        elif t == "dnat":
            assert tokens[1] == "to", text
            ops.append(Op("dnat", (tokens[2],)))
            del tokens[:3]
        elif t == "masquerade":
            ops.append(Op("masquerade"))
            del tokens[:2 if tokens[1:2] == ["fully-random"] else 1]
        elif t in ("jump", "goto"):
            ops.append(Op(t, (tokens[1],)))
            del tokens[:2]
        elif t in VERDICT_WORDS:
            ops.append(Op(t))
            del tokens[:1]
        elif t == "comment":
            del tokens[:2]
        else:
            raise ValueError(f"unknown statement {t!r} in: {text}")
    return Rule(text, ops)


def _items(body: str) -> list[str]:
    """The elements of "{ a, b }"."""
    body = body.strip()
    assert body.startswith("{") and body.endswith("}"), body
    return [item.strip() for item in body[1:-1].split(",") if item.strip()]


def _element(text: str) -> tuple[tuple[str, ...], Optional[str]]:
    """'10.96.0.1 . tcp . 80 comment "x" : goto c' -> (("10.96.0.1", "tcp", "80"), "goto c")."""
    text = re.sub(r' comment "[^"]*"', "", text)
    key, _, value = text.partition(" : ")
    return tuple(key.split(" . ")), (value or None)


def _spec(container: Container, line: str) -> None:
    words = line.split()
    if words[0] == "flags":
        container.interval = "interval" in words[1].split(",")
    elif words[0] == "timeout":
        assert words[1].endswith("s"), line
        container.timeout = float(words[1][:-1])
    elif words[0] not in ("type", "comment", "auto-merge"):
        raise ValueError(f"unknown set option: {line}")


def _hook(line: str) -> tuple[str, str, int]:
    m = re.fullmatch(r"type (filter|nat) hook (\w+) priority (-?\d+) ?; policy accept ?;?", line.strip())
    assert m, f"unsupported base chain: {line}"
    return m.group(1), m.group(2), int(m.group(3))


# --- the ruleset ---

class Ruleset:
    def __init__(self, local: Iterable[str], random: Callable[[], float] = lambda: 0.0,
                 clock: Callable[[], float] = lambda: 0.0):
        self.local = [ip_network(a if "/" in a else f"{a}/32") for a in local]
        self.random, self.clock = random, clock
        self.tables: dict[str, Table] = {}

    # --- loading ---

    def load(self, script: str) -> None:
        """`nft -f`: every command of the script in one transaction."""
        work = copy.deepcopy(self.tables)
        lines = [l.strip() for l in script.splitlines()]
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"table ip (\S+) \{", line)
            if m:
                i = self._block(work, m.group(1), lines, i)
            else:
                self._command(work, line)
        self.tables = work

    def _block(self, work: dict[str, Table], name: str, lines: list[str], i: int) -> int:
        """A `table ip NAME { ... }` block: its chains and sets exist before its rules and elements."""
        table = work.setdefault(name, Table())
        rules: list[tuple[str, str]] = []
        elements: list[tuple[str, str]] = []
        while lines[i] != "}":
            m = re.fullmatch(r"(set|map|chain) (\S+) \{", lines[i])
            if not m:
                assert lines[i].startswith("comment "), lines[i]
                i += 1
                continue
            kind, obj = m.groups()
            i += 1
            if kind == "chain":
                assert obj not in table.chains, f"chain {obj} declared twice"
                table.chains[obj] = chain = Chain()
                while lines[i] != "}":
                    if lines[i].startswith("type "):
                        chain.hook = _hook(lines[i])
                    elif not lines[i].startswith("comment "):
                        rules.append((obj, lines[i]))
                    i += 1
            else:
                assert obj not in table.sets, f"set {obj} declared twice"
                table.sets[obj] = container = Container(kind)
                while lines[i] != "}":
                    if lines[i].startswith("elements = {"):
                        body = lines[i][len("elements = "):]
                        while not body.endswith("}"):
                            i += 1
                            body += " " + lines[i]
                        elements += [(obj, e) for e in _items(body)]
                    else:
                        _spec(container, lines[i])
                    i += 1
            i += 1
        for chain, text in rules:
            self._add_rule(table, chain, text)
        for name_, text in elements:
            self._add_element(table, name_, text)
        return i + 1

    def _command(self, work: dict[str, Table], line: str) -> None:
        m = re.fullmatch(r"(add|delete|flush) (table|chain|set|map|rule|element) ip (\S+)(?: (.*))?", line)
        if not m:
            raise ValueError(f"unsupported command: {line}")
        verb, what, table_name, rest = m.groups()
        if what == "table":
            if verb == "add":
                work.setdefault(table_name, Table())
            else:
                assert verb == "delete" and table_name in work, line
                del work[table_name]
            return
        table = work[table_name]
        name, _, body = (rest or "").partition(" ")
        if what == "chain":
            self._chain_command(table, verb, name, body)
        elif what in ("set", "map"):
            self._set_command(table, verb, what, name, body)
        elif what == "rule":
            assert verb == "add", line
            self._add_rule(table, name, body)
        else:
            for item in _items(body):
                if verb == "add":
                    self._add_element(table, name, item)
                else:
                    self._delete_element(table, name, item)

    def _chain_command(self, table: Table, verb: str, name: str, body: str) -> None:
        if verb == "add":
            chain = table.chains.setdefault(name, Chain())
            spec = [s.strip() for s in body.strip("{} ").split(";") if s.strip()]
            for s in spec:
                if s.startswith("type "):
                    chain.hook = _hook(s + " ; policy accept ;")
                else:
                    assert s.startswith("comment "), s
        elif verb == "flush":
            assert name in table.chains, f"flush of a missing chain {name}"
            table.chains[name].rules = []
        else:
            assert name in table.chains, f"delete of a missing chain {name}"
            if table.chains[name].rules:
                raise ValueError(f"delete chain {name}: it still has rules")
            users = self._users(table, name)
            if users:
                raise ValueError(f"delete chain {name}: still referenced by {users[0]}")
            del table.chains[name]

    def _set_command(self, table: Table, verb: str, kind: str, name: str, body: str) -> None:
        if verb == "add":
            container = table.sets.setdefault(name, Container(kind))
            for s in body.strip("{} ").split(";"):
                if s.strip():
                    _spec(container, s.strip())
            return
        assert verb == "delete" and name in table.sets, f"delete of a missing set {name}"
        users = [r.text for c in table.chains.values() for r in c.rules if name in r.sets()]
        if users:
            raise ValueError(f"delete set {name}: still used by {users[0]}")
        del table.sets[name]

    @staticmethod
    def _users(table: Table, chain: str) -> list[str]:
        """Rules and map elements that jump or go to `chain`."""
        out = [r.text for c in table.chains.values() for r in c.rules if chain in r.targets()]
        return out + [f"{n} {k}" for n, s in table.sets.items() for k, v in s.elements.items()
                      if v and v.split()[-1] == chain]

    @staticmethod
    def _add_rule(table: Table, chain: str, text: str) -> None:
        if chain not in table.chains:
            raise ValueError(f"rule on a chain that does not exist: {chain}: {text}")
        rule = parse_rule(text)
        missing = rule.targets() - set(table.chains) or rule.sets() - set(table.sets)
        if missing:
            raise ValueError(f"rule refers to {sorted(missing)}, which does not exist: {text}")
        table.chains[chain].rules.append(rule)

    @staticmethod
    def _add_element(table: Table, name: str, text: str) -> None:
        key, value = _element(text)
        container = table.sets[name]
        assert (value is None) == (container.kind == "set"), f"{name}: {text}"
        if value and value.split()[0] in ("jump", "goto") and value.split()[1] not in table.chains:
            raise ValueError(f"element of {name} goes to a chain that does not exist: {text}")
        if container.elements.get(key, value) != value:
            raise ValueError(f"element {key} of {name} exists with another verdict")
        container.elements[key] = value

    @staticmethod
    def _delete_element(table: Table, name: str, text: str) -> None:
        key, _ = _element(text)
        if key not in table.sets[name].elements:
            raise ValueError(f"delete of a missing element {key} of {name}")
        del table.sets[name].elements[key]

    # --- tracing ---

    def is_local(self, addr: str) -> bool:
        return any(ip_address(addr) in net for net in self.local)

    def trace(self, packet: Packet, hook: str) -> Outcome:
        """The first packet of a new connection, from outside (PREROUTING) or a local process (OUTPUT)."""
        pkt = Flow(packet.src, packet.dst, packet.proto, packet.dport)
        if hook == "PREROUTING":
            verdict = self._hook("prerouting", pkt)
            local = self.is_local(pkt.dst)
            if verdict == "ACCEPT":
                verdict = self._hook("input" if local else "forward", pkt)
        elif hook == "OUTPUT":
            verdict, local = self._hook("output", pkt), False
        else:
            raise ValueError(hook)
        if verdict == "ACCEPT" and not local:
            self._hook("postrouting", pkt)
        return Outcome(pkt.dnat, pkt.masquerade, verdict, pkt.path)

    def _hook(self, hook: str, pkt: Flow) -> str:
        """Every base chain on `hook`, by priority: ACCEPT, or the DROP/REJECT that ended it."""
        bases = sorted(((c.hook[2], t, n, c.hook[0]) for t, table in self.tables.items()
                        for n, c in table.chains.items() if c.hook and c.hook[1] == hook), key=lambda b: b[0])
        nat_done = False
        for _, table, chain, kind in bases:
            if kind == "nat" and nat_done:
                continue
            before = (pkt.dnat, pkt.masquerade)
            verdict = self._run(self.tables[table], chain, pkt, kind)
            nat_done = nat_done or (pkt.dnat, pkt.masquerade) != before
            if verdict in ("drop", "reject"):
                return verdict.upper()
        return "ACCEPT"

    def _run(self, table: Table, chain: str, pkt: Flow, kind: str) -> Optional[str]:
        """A chain's verdict (accept, drop, reject), or None when it ends or returns."""
        for rule in table.chains[chain].rules:
            verdict = self._rule(table, rule, pkt, kind)
            if verdict == "return":
                return None
            if verdict is not None:
                return verdict
        return None

    def _rule(self, table: Table, rule: Rule, pkt: Flow, kind: str) -> Optional[str]:
        """None: on to the next rule; "return": leave the chain; else the verdict."""
        matched = False
        for op in rule.ops:
            if op.kind in ("eq", "set", "anon", "fib_local", "mark_and"):
                if self._test(table, op, pkt) == op.negate:
                    return None
                continue
            verdict = None
            if op.kind in ("vmap", "numgen"):
                verdict = self._lookup(table, op, pkt)
                if verdict is None:
                    return None
            elif op.kind in ("jump", "goto", *VERDICT_WORDS):
                verdict = " ".join((op.kind, *op.args))
            if not matched:
                pkt.path.append(rule.text)
                matched = True
            if verdict is not None:
                return self._verdict(table, verdict, pkt, kind, rule.text)
            self._statement(table, op, pkt, kind)
            if op.kind in ("dnat", "masquerade"):
                return "accept"
        return None

    def _verdict(self, table: Table, verdict: str, pkt: Flow, kind: str, rule: str) -> Optional[str]:
        word, _, target = verdict.partition(" ")
        if word == "reject":
            assert kind == "filter", f"reject in a {kind} chain: {rule}"
        if word in VERDICT_WORDS:
            return word
        result = self._run(table, target, pkt, kind)
        if word == "goto":
            return result or "return"     # a goto never comes back: its end is the caller's end
        return result

    def _lookup(self, table: Table, op: Op, pkt: Flow) -> Optional[str]:
        if op.kind == "numgen":
            n, spread = op.args
            return spread[int(self.random() * n)]
        fields, name = op.args
        return table.sets[name].elements.get(tuple(str(getattr(pkt, f)) for f in fields))

    def _test(self, table: Table, op: Op, pkt: Flow) -> bool:
        if op.kind == "mark_and":
            mask, value = op.args
            return pkt.mark & mask == value
        if op.kind == "fib_local":
            return self.is_local(getattr(pkt, op.args[0]))
        fields, what = op.args
        values = tuple(str(getattr(pkt, f)) for f in fields)
        if op.kind == "eq":
            return _covers(what, values[0])
        if op.kind == "anon":
            return any(_covers(item, values[0]) for item in what)
        container = table.sets[what]
        if values[0] in container.dynamic and container.dynamic[values[0]] > self.clock():
            return True
        if container.interval:
            return any(all(_covers(k, v) for k, v in zip(key, values)) for key in container.elements)
        return values in container.elements

    def _statement(self, table: Table, op: Op, pkt: Flow, kind: str) -> None:
        if op.kind == "mark_or":
            pkt.mark |= op.args[0]
        elif op.kind == "mark_xor":
            pkt.mark ^= op.args[0]
        elif op.kind == "update":
            container = table.sets[op.args[0]]
            assert container.timeout, f"update of a set without timeout: {op.args[0]}"
            container.dynamic[pkt.src] = self.clock() + container.timeout
        elif op.kind == "dnat":
            assert kind == "nat", f"dnat in a {kind} chain"
            ip, port = op.args[0].rsplit(":", 1)
            pkt.dst, pkt.dport, pkt.dnat = ip, int(port), op.args[0]
        elif op.kind == "masquerade":
            assert kind == "nat", f"masquerade in a {kind} chain"
            pkt.masquerade = True
        else:
            raise AssertionError(op.kind)


def _covers(pattern: str, value: str) -> bool:
    """An address in a CIDR or equal to an address; any other value equal."""
    if "/" in pattern or _is_address(pattern):
        return ip_address(value) in ip_network(pattern if "/" in pattern else f"{pattern}/32")
    return pattern == value


def _is_address(text: str) -> bool:
    return bool(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", text))
