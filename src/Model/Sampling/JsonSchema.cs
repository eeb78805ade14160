using System.Text;
using System.Text.Json;

namespace ActorRing.Model.Sampling;

/// <summary>A JSON Schema this server cannot hold an answer to, with the keyword and where it is.</summary>
public sealed class JsonSchemaException(string message) : Exception(message);

/// <summary>
/// A JSON Schema compiled for <see cref="JsonSchemaPrefix"/> (OpenAI's <c>response_format: {"type": "json_schema"}</c>).
/// The subset is what OpenAI's strict mode and Pydantic's models use, and every keyword in it is enforced:
/// <list type="bullet">
/// <item><c>type</c> object with <c>properties</c>, <c>required</c>, and <c>additionalProperties</c> absent or
/// false (only the listed properties are written, each at most once, in any order), or without properties (a map:
/// any keys, each value of <c>additionalProperties</c>' schema); array (<c>items</c>, <c>minItems</c>,
/// <c>maxItems</c>); string, number, integer, boolean, null, or a list of those;</item>
/// <item><c>true</c> or a schema of annotations only: any JSON value;</item>
/// <item><c>enum</c> and <c>const</c> of strings;</item>
/// <item><c>minimum</c>, <c>maximum</c>, <c>exclusiveMinimum</c> and <c>exclusiveMaximum</c> of integers and numbers
/// (Pydantic's <c>ge</c>, <c>le</c>, <c>gt</c>, <c>lt</c>): a digit is allowed only while some number it begins is in
/// range, so a bounded number is written without an exponent and with at most 18 digits before the point and 15 after
/// it; <c>minLength</c> and <c>maxLength</c> of strings, counted in characters (an escape is one);</item>
/// <item><c>format</c> of strings: <c>date</c>, <c>time</c> and <c>date-time</c> (RFC 3339, with a time zone; each
/// field's digits within its range, the calendar not checked), <c>uuid</c>, and <c>email</c> (a local part of letters,
/// digits and <c>._%+-</c>, an @, and a domain of two or more dot-separated labels of letters, digits and hyphens);</item>
/// <item><c>anyOf</c> and <c>oneOf</c> whose branches start differently (an object, an array, a string, a number, a
/// boolean, null): Pydantic's Optional fields are <c>anyOf</c> a type and null;</item>
/// <item>among those branches, several objects that share a required property whose values (a string <c>const</c> or
/// <c>enum</c>) differ from branch to branch: a discriminated union (Pydantic's, and a forced tool call's choice of
/// function). That property, the discriminator, is written first, and its value picks the branch whose rules hold
/// for the rest of the object;</item>
/// <item><c>$ref</c> to <c>#/$defs/…</c> or <c>#/definitions/…</c>, recursive ones included.</item>
/// </list>
/// Annotations (title, description, default, examples, $schema, $id, $comment) are ignored. Any other keyword
/// (pattern, multipleOf, another format, …) is refused by name rather than silently not enforced.
/// </summary>
public sealed class JsonSchema
{
    internal enum Kind : byte { Object, Array, String, Number, Integer, Boolean, Null, AnyOf, Union }

    /// <summary>The string formats enforced (JSON Schema's <c>format</c>): RFC 3339's full-date, full-time and date-time,
    /// RFC 4122's uuid, and an email address (Pydantic's EmailStr).</summary>
    internal enum StringFormat : byte { None, Date, Time, DateTime, Uuid, Email }

    internal sealed class Node
    {
        public Kind Kind;
        /// <summary>Object: the property names; String: the enum values (none: any string). UTF-8, plain text.</summary>
        public byte[][] Names = [];
        /// <summary>Object: each property's schema; Array: the items' schema; AnyOf: the branches; Union: the
        /// discriminator's values (a string enum of every branch's values).</summary>
        public int[] Children = [];
        /// <summary>Union: per discriminator value, the object it picks and the discriminator's index among that
        /// object's properties. A union is read as an object whose one property (<see cref="Names"/>, required) is the
        /// discriminator, until its value turns it into the branch.</summary>
        public int[] Branches = [], BranchKey = [];
        public ulong Required;
        /// <summary>Object: any key, each value of Children[0]'s schema (JSON mode's objects), instead of Names.</summary>
        public bool AnyKeys;
        public int MinItems, MaxItems = int.MaxValue;
        /// <summary>String: its length in characters, and its format.</summary>
        public int MinLength, MaxLength = int.MaxValue;
        public StringFormat Format;
        /// <summary>Number, Integer: its bounds (infinite when absent), each inclusive or not.</summary>
        public double Minimum = double.NegativeInfinity, Maximum = double.PositiveInfinity;
        public bool MinimumExclusive, MaximumExclusive;

        /// <summary>Whether a number's value must be tracked as it is written.</summary>
        public bool Bounded => !double.IsNegativeInfinity(Minimum) || !double.IsPositiveInfinity(Maximum);

        /// <summary>Whether <paramref name="low"/> to <paramref name="high"/> (each end closed) meets the bounds.</summary>
        public bool Meets(double low, double high)
        {
            double from = Math.Max(low, Minimum), to = Math.Min(high, Maximum);
            if (from > to) return false;
            if (from < to) return true;
            // One point: it must not sit on an exclusive bound.
            return !(MinimumExclusive && from == Minimum) && !(MaximumExclusive && to == Maximum);
        }
        /// <summary>Per byte: whether a value of this node can start with it (an anyOf: any branch's).</summary>
        public bool[] StartBytes = new bool[256];
    }

    /// <summary>The most properties of one object, and of enum values of one string (one bit each in a 64-bit mask).</summary>
    public const int MaxNames = 64;

    private static readonly HashSet<string> Annotations = ["title", "description", "default", "examples", "$schema", "$id", "$comment", "$defs", "definitions"];

    internal Node[] Nodes { get; }

    internal int Root { get; }

    private JsonSchema(Node[] nodes, int root)
    {
        Nodes = nodes;
        Root = root;
    }

    /// <summary>Compiles <paramref name="schema"/>; its root must be an object, as OpenAI requires.</summary>
    /// <exception cref="JsonSchemaException">The schema uses what this server cannot enforce, or is malformed.</exception>
    public static JsonSchema Compile(JsonElement schema)
    {
        var compiler = new Compiler(schema);
        int root = compiler.Compile(schema, "#");
        compiler.FormUnions();
        var top = compiler.Nodes[root];
        while (top.Kind == Kind.AnyOf && top.Children.Length == 1) top = compiler.Nodes[top.Children[0]]; // a $ref
        if (top.Kind is not (Kind.Object or Kind.Union)) throw new JsonSchemaException("the schema's root must be an object (\"type\": \"object\"), as OpenAI requires");
        FillStartBytes(compiler.Nodes);
        compiler.CheckBranchesStartApart();
        return new JsonSchema([.. compiler.Nodes], root);
    }

    /// <summary>Which bytes each node's values start with; anyOf nodes (refs included, which may be recursive) take
    /// their branches' until nothing changes.</summary>
    private static void FillStartBytes(List<Node> nodes)
    {
        foreach (var n in nodes)
        {
            switch (n.Kind)
            {
                case Kind.Object or Kind.Union: n.StartBytes['{'] = true; break;
                case Kind.Array: n.StartBytes['['] = true; break;
                case Kind.String: n.StartBytes['"'] = true; break;
                case Kind.Number or Kind.Integer:
                    n.StartBytes['-'] = true;
                    for (char d = '0'; d <= '9'; d++) n.StartBytes[d] = true;
                    break;
                case Kind.Boolean: n.StartBytes['t'] = n.StartBytes['f'] = true; break;
                case Kind.Null: n.StartBytes['n'] = true; break;
            }
        }
        for (bool changed = true; changed;)
        {
            changed = false;
            foreach (var n in nodes.Where(n => n.Kind == Kind.AnyOf))
            {
                foreach (int c in n.Children)
                {
                    for (int b = 0; b < 256; b++)
                    {
                        if (nodes[c].StartBytes[b] && !n.StartBytes[b]) n.StartBytes[b] = changed = true;
                    }
                }
            }
        }
    }

    /// <summary>Compiled schemas by their text's string instance: a request's text goes from the HTTP layer through
    /// the sampling options, their validations and the control message to the picker as one string, so it is
    /// compiled once, and the entry goes when the request's last reference does.</summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<string, JsonSchema> ByText = [];

    /// <summary><see cref="Compile"/> of a schema's JSON text, once per string instance.</summary>
    /// <exception cref="JsonSchemaException">The text is not JSON, or the schema uses what this server cannot enforce.</exception>
    public static JsonSchema FromText(string text) => ByText.GetValue(text, static t =>
    {
        try
        {
            using var document = JsonDocument.Parse(t);
            return Compile(document.RootElement);
        }
        catch (JsonException e)
        {
            throw new JsonSchemaException($"the schema is not valid JSON: {e.Message}");
        }
    });

    /// <summary>The state before the answer's first byte.</summary>
    public JsonSchemaPrefix Start() => new(this);

    /// <summary>Any JSON object (OpenAI's json_object): any keys, any values, nested as deep as
    /// <see cref="JsonSchemaPrefix.MaxDepth"/> allows.</summary>
    public static JsonSchema AnyObject { get; } = Compile(JsonDocument.Parse("""{"type": "object"}""").RootElement);

    /// <summary>Whether <paramref name="bytes"/> hold no quote, backslash or control character: text that goes on
    /// wherever a string is open, and a name this server can match without escapes.</summary>
    public static bool IsPlainStringText(ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            if (b < 0x20 || b == (byte)'"' || b == (byte)'\\') return false;
        }
        return true;
    }

    private sealed class Compiler(JsonElement document)
    {
        public List<Node> Nodes { get; } = [];
        private readonly Dictionary<string, int> _refs = [];

        private int _any = -1;

        /// <summary>Any JSON value: the schema true, or one of annotations only (JSON Schema's meaning of {}).</summary>
        private int Any()
        {
            if (_any >= 0) return _any;
            var any = new Node { Kind = Kind.AnyOf };
            _any = Add(any);
            int obj = Add(new Node { Kind = Kind.Object, AnyKeys = true, Children = [_any] });
            int array = Add(new Node { Kind = Kind.Array, Children = [_any] });
            any.Children = [obj, array, Add(new Node { Kind = Kind.String }), Add(new Node { Kind = Kind.Number }),
                Add(new Node { Kind = Kind.Boolean }), Add(new Node { Kind = Kind.Null })];
            return _any;
        }

        public int Compile(JsonElement s, string path)
        {
            if (s.ValueKind == JsonValueKind.True) return Any();
            if (s.ValueKind != JsonValueKind.Object) throw new JsonSchemaException($"the schema at {path} must be an object or true, got {s.ValueKind.ToString().ToLowerInvariant()}");
            foreach (var p in s.EnumerateObject())
            {
                if (!Annotations.Contains(p.Name) && p.Name is not ("type" or "properties" or "required" or "additionalProperties" or "items"
                    or "minItems" or "maxItems" or "enum" or "const" or "anyOf" or "oneOf" or "$ref" or "minLength" or "maxLength"
                    or "minimum" or "maximum" or "exclusiveMinimum" or "exclusiveMaximum" or "format"))
                    throw new JsonSchemaException($"the keyword \"{p.Name}\" at {path} is not supported: this server would not enforce it");
            }
            if (s.TryGetProperty("$ref", out var reference)) return Reference(s, reference, path);
            if (s.TryGetProperty("anyOf", out var anyOf) || s.TryGetProperty("oneOf", out anyOf))
            {
                string keyword = s.TryGetProperty("anyOf", out _) ? "anyOf" : "oneOf";
                OnlyAnnotationsBeside(s, keyword, path);
                if (anyOf.ValueKind != JsonValueKind.Array || anyOf.GetArrayLength() == 0) throw new JsonSchemaException($"{keyword} at {path} must be a non-empty array");
                return AnyOf([.. anyOf.EnumerateArray().Select((b, i) => Compile(b, $"{path}/{keyword}/{i}"))], $"{path}/{keyword}");
            }
            if (s.TryGetProperty("enum", out var values) || s.TryGetProperty("const", out values))
            {
                bool isConst = !s.TryGetProperty("enum", out _);
                var list = isConst ? [values] : values.ValueKind == JsonValueKind.Array ? values.EnumerateArray().ToList()
                    : throw new JsonSchemaException($"enum at {path} must be an array");
                if (list.Count == 0 || list.Count > MaxNames) throw new JsonSchemaException($"enum at {path} must have 1 to {MaxNames} values, got {list.Count}");
                if (s.TryGetProperty("type", out var t) && !(t.ValueKind == JsonValueKind.String && t.GetString() == "string"))
                    throw new JsonSchemaException($"enum and const at {path} must be strings (\"type\": \"string\")");
                var names = list.Select(v => v.ValueKind == JsonValueKind.String ? Plain(v.GetString()!, $"{path}/{(isConst ? "const" : "enum")}")
                    : throw new JsonSchemaException($"enum and const values at {path} must be strings, got {v.ValueKind.ToString().ToLowerInvariant()} {v.GetRawText()}")).ToArray();
                NoBounds(s, path, "strings");
                if (s.TryGetProperty("format", out _)) throw new JsonSchemaException($"format at {path} cannot be combined with enum or const: the values are given");
                var (minLength, maxLength) = Lengths(s, path);
                foreach (var v in list)
                {
                    int length = new System.Globalization.StringInfo(v.GetString()!).LengthInTextElements;
                    if (length < minLength || length > maxLength)
                        throw new JsonSchemaException($"the value {v.GetRawText()} at {path} does not fit its own minLength/maxLength");
                }
                return Add(new Node { Kind = Kind.String, Names = names });
            }
            if (!s.TryGetProperty("type", out var type))
            {
                if (s.EnumerateObject().All(p => Annotations.Contains(p.Name))) return Any();
                throw new JsonSchemaException($"the schema at {path} has no type: this server needs the type of a value whose schema says more than annotations");
            }
            if (type.ValueKind == JsonValueKind.Array)
            {
                var kinds = type.EnumerateArray().Select(k => k.ValueKind == JsonValueKind.String ? k.GetString()! : throw new JsonSchemaException($"type at {path} must name types")).ToList();
                if (kinds.Count == 0) throw new JsonSchemaException($"type at {path} must not be empty");
                KeywordsFitTypes(s, kinds, path);
                return kinds.Count == 1 ? Typed(s, kinds[0], path) : AnyOf([.. kinds.Select(k => Typed(s, k, path))], $"{path}/type");
            }
            if (type.ValueKind != JsonValueKind.String) throw new JsonSchemaException($"type at {path} must be a string or a list of strings");
            KeywordsFitTypes(s, [type.GetString()!], path);
            return Typed(s, type.GetString()!, path);
        }

        private int Typed(JsonElement s, string type, string path)
        {
            switch (type)
            {
                case "object":
                    return Object(s, path);
                case "array":
                    var array = new Node { Kind = Kind.Array, MinItems = Count(s, "minItems", 0, path), MaxItems = Count(s, "maxItems", int.MaxValue, path) };
                    if (array.MinItems > array.MaxItems) throw new JsonSchemaException($"minItems ({array.MinItems}) exceeds maxItems ({array.MaxItems}) at {path}");
                    int id = Add(array);
                    array.Children = [s.TryGetProperty("items", out var items) ? Compile(items, $"{path}/items") : Any()];
                    return id;
                case "string":
                    var (minLength, maxLength) = Lengths(s, path);
                    return Add(new Node { Kind = Kind.String, MinLength = minLength, MaxLength = maxLength, Format = Format(s, path) });
                case "number" or "integer":
                    return Add(Bounds(s, new Node { Kind = type == "number" ? Kind.Number : Kind.Integer }, path));
                case "boolean": return Add(new Node { Kind = Kind.Boolean });
                case "null": return Add(new Node { Kind = Kind.Null });
                default: throw new JsonSchemaException($"type \"{type}\" at {path} is not a JSON Schema type");
            }
        }

        private int Object(JsonElement s, string path)
        {
            bool listed = s.TryGetProperty("properties", out _);
            bool hasExtra = s.TryGetProperty("additionalProperties", out var extra) && extra.ValueKind != JsonValueKind.False;
            if (listed && hasExtra)
                throw new JsonSchemaException($"additionalProperties at {path} must be false or absent beside properties: only the listed properties are written");
            var node = new Node { Kind = Kind.Object };
            int id = Add(node);
            if (!listed && (hasExtra || extra.ValueKind == JsonValueKind.Undefined))
            {
                // A map (Pydantic's dict[str, T]): any keys, each value of additionalProperties' schema (absent: any).
                if (s.TryGetProperty("required", out _)) throw new JsonSchemaException($"required at {path} needs properties");
                node.AnyKeys = true;
                node.Children = [hasExtra ? Compile(extra, $"{path}/additionalProperties") : Any()];
                return id;
            }
            var names = new List<string>();
            var children = new List<int>();
            if (s.TryGetProperty("properties", out var properties))
            {
                if (properties.ValueKind != JsonValueKind.Object) throw new JsonSchemaException($"properties at {path} must be an object");
                foreach (var p in properties.EnumerateObject())
                {
                    names.Add(p.Name);
                    children.Add(Compile(p.Value, $"{path}/properties/{p.Name}"));
                }
            }
            if (names.Count > MaxNames) throw new JsonSchemaException($"the object at {path} has {names.Count} properties; at most {MaxNames} are supported");
            node.Names = [.. names.Select(n => Plain(n, $"{path}/properties"))];
            node.Children = [.. children];
            if (s.TryGetProperty("required", out var required))
            {
                if (required.ValueKind != JsonValueKind.Array) throw new JsonSchemaException($"required at {path} must be an array of property names");
                foreach (var r in required.EnumerateArray())
                {
                    int at = r.ValueKind == JsonValueKind.String ? names.IndexOf(r.GetString()!) : -1;
                    if (at < 0) throw new JsonSchemaException($"required at {path} names {r.GetRawText()}, which is not in properties");
                    node.Required |= 1UL << at;
                }
            }
            return id;
        }

        private int Reference(JsonElement s, JsonElement reference, string path)
        {
            OnlyAnnotationsBeside(s, "$ref", path);
            string target = reference.ValueKind == JsonValueKind.String ? reference.GetString()! : throw new JsonSchemaException($"$ref at {path} must be a string");
            if (_refs.TryGetValue(target, out int known)) return known;
            string[] parts = target.Split('/');
            if (parts.Length != 3 || parts[0] != "#" || parts[1] is not ("$defs" or "definitions")
                || !document.TryGetProperty(parts[1], out var defs) || defs.ValueKind != JsonValueKind.Object || !defs.TryGetProperty(parts[2], out var def))
                throw new JsonSchemaException($"$ref \"{target}\" at {path} must name an entry of this schema's $defs or definitions");
            // A placeholder first, so a schema that refers to itself (a tree) finds its own id.
            var placeholder = new Node { Kind = Kind.AnyOf };
            int id = Add(placeholder);
            _refs[target] = id;
            int body = Compile(def, target);
            placeholder.Children = [body];
            return id;
        }

        private readonly List<(int Node, string Path)> _anyOfs = [];

        private int AnyOf(int[] branches, string path)
        {
            int id = Add(new Node { Kind = Kind.AnyOf, Children = branches });
            _anyOfs.Add((id, path));
            return id;
        }

        /// <summary>A node past the refs and one-branch anyOfs that stand for it (a ref's placeholder holds its body as its
        /// one branch).</summary>
        private int Resolve(int id)
        {
            for (int hops = 0; hops < Nodes.Count && Nodes[id].Kind == Kind.AnyOf && Nodes[id].Children.Length == 1; hops++)
                id = Nodes[id].Children[0];
            return id;
        }

        /// <summary>
        /// Turns the object branches of each anyOf (two or more of them) into one <see cref="Kind.Union"/> branch, told
        /// apart by a discriminator: the first property of the first such object that every one of them requires and
        /// whose schema in each is a string const or enum, the values differing across the branches. Runs once every
        /// ref is compiled, since a branch may be a ref to a definition compiled later.
        /// </summary>
        public void FormUnions()
        {
            foreach (var (id, path) in _anyOfs)
            {
                var node = Nodes[id];
                var objects = node.Children.Where(c => Nodes[Resolve(c)] is { Kind: Kind.Object, AnyKeys: false }).ToList();
                if (objects.Count < 2) continue;
                var bodies = objects.Select(c => Nodes[Resolve(c)]).ToList();
                byte[]? key = bodies[0].Names.FirstOrDefault(name => bodies.All(b => DiscriminatorAt(b, name) >= 0));
                if (key is null)
                    throw new JsonSchemaException($"{path}: {objects.Count} branches are objects, which this server tells apart only by a property every one of them requires whose values (a string const or enum) differ, written first; these share none");
                var values = new List<byte[]>();
                var branches = new List<int>();
                var keyIndex = new List<int>();
                foreach (int c in objects)
                {
                    var body = Nodes[Resolve(c)];
                    int at = DiscriminatorAt(body, key);
                    foreach (var value in Nodes[Resolve(body.Children[at])].Names)
                    {
                        int seen = values.FindIndex(v => v.AsSpan().SequenceEqual(value));
                        if (seen >= 0 && branches[seen] == Resolve(c)) continue; // an enum that repeats a value
                        if (seen >= 0)
                            throw new JsonSchemaException($"{path}: the value \"{Encoding.UTF8.GetString(value)}\" of \"{Encoding.UTF8.GetString(key)}\" is in two branches, so it cannot tell them apart");
                        values.Add(value);
                        branches.Add(Resolve(c));
                        keyIndex.Add(at);
                    }
                }
                if (values.Count > MaxNames)
                    throw new JsonSchemaException($"{path}: the branches' values of \"{Encoding.UTF8.GetString(key)}\" are {values.Count}; at most {MaxNames} are supported");
                int union = Add(new Node
                {
                    Kind = Kind.Union, Names = [key], Required = 1, Children = [Add(new Node { Kind = Kind.String, Names = [.. values] })],
                    Branches = [.. branches], BranchKey = [.. keyIndex],
                });
                node.Children = [union, .. node.Children.Where(c => !objects.Contains(c))];
            }
        }

        /// <summary>The index of property <paramref name="name"/> in an object that requires it as a string const or
        /// enum, or -1.</summary>
        private int DiscriminatorAt(Node obj, byte[] name)
        {
            for (int i = 0; i < obj.Names.Length; i++)
            {
                if (!obj.Names[i].AsSpan().SequenceEqual(name)) continue;
                var value = Nodes[Resolve(obj.Children[i])];
                return (obj.Required & (1UL << i)) != 0 && value.Kind == Kind.String && value.Names.Length > 0 ? i : -1;
            }
            return -1;
        }

        /// <summary>
        /// Refuses an anyOf two of whose branches can start with the same byte: the recognizer picks a branch by its
        /// value's first byte. Checked on the filled <see cref="Node.StartBytes"/>, so branches that are refs (recursive
        /// ones too) count with everything they can start with.
        /// </summary>
        public void CheckBranchesStartApart()
        {
            foreach (var (id, path) in _anyOfs)
            {
                var taken = new bool[256];
                foreach (int branch in Nodes[id].Children)
                {
                    for (int b = 0; b < 256; b++)
                    {
                        if (!Nodes[branch].StartBytes[b]) continue;
                        if (taken[b]) throw new JsonSchemaException($"{path}: two branches can start with the same kind of value ({KindStartingWith((byte)b)}), which this server cannot tell apart as it writes (objects can be told apart by a property they all require whose string const or enum values differ)");
                        taken[b] = true;
                    }
                }
            }
        }

        private static string KindStartingWith(byte b) => b switch
        {
            (byte)'{' => "an object", (byte)'[' => "an array", (byte)'"' => "a string", (byte)'t' or (byte)'f' => "a boolean", (byte)'n' => "null", _ => "a number",
        };

        private static void OnlyAnnotationsBeside(JsonElement s, string keyword, string path)
        {
            foreach (var p in s.EnumerateObject())
            {
                if (p.Name != keyword && !Annotations.Contains(p.Name))
                    throw new JsonSchemaException($"{keyword} at {path} cannot be combined with \"{p.Name}\"");
            }
        }

        private static StringFormat Format(JsonElement s, string path)
        {
            if (!s.TryGetProperty("format", out var f)) return StringFormat.None;
            return f.ValueKind != JsonValueKind.String ? throw new JsonSchemaException($"format at {path} must be a string")
                : f.GetString() switch
                {
                    "date" => StringFormat.Date,
                    "time" => StringFormat.Time,
                    "date-time" => StringFormat.DateTime,
                    "uuid" => StringFormat.Uuid,
                    "email" => StringFormat.Email,
                    var other => throw new JsonSchemaException($"the format \"{other}\" at {path} is not supported: this server enforces date, time, date-time, uuid and email"),
                };
        }

        /// <summary>minLength and maxLength, if given: a string's length in characters.</summary>
        private static (int Min, int Max) Lengths(JsonElement s, string path)
        {
            int min = Count(s, "minLength", 0, path), max = Count(s, "maxLength", int.MaxValue, path);
            if (min > max) throw new JsonSchemaException($"minLength ({min}) exceeds maxLength ({max}) at {path}");
            return (min, max);
        }

        /// <summary>A number's minimum, maximum, exclusiveMinimum and exclusiveMaximum (numbers, as in JSON Schema since
        /// draft 6); the tighter of an inclusive and an exclusive bound on the same side holds.</summary>
        private static Node Bounds(JsonElement s, Node node, string path)
        {
            double? Bound(string name)
            {
                if (!s.TryGetProperty(name, out var v)) return null;
                if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
                    throw new JsonSchemaException($"{name} at {path} must be a number, got {v.GetRawText()} (the boolean form of draft 4 is not supported)");
                return d;
            }
            if (Bound("minimum") is double min) node.Minimum = min;
            if (Bound("exclusiveMinimum") is double xmin && xmin >= node.Minimum) (node.Minimum, node.MinimumExclusive) = (xmin, true);
            if (Bound("maximum") is double max) node.Maximum = max;
            if (Bound("exclusiveMaximum") is double xmax && xmax <= node.Maximum) (node.Maximum, node.MaximumExclusive) = (xmax, true);
            if (node.Kind == Kind.Integer)
            {
                // Integer bounds: the nearest integers inside them, inclusive.
                if (!double.IsNegativeInfinity(node.Minimum)) node.Minimum = node.MinimumExclusive ? Math.Floor(node.Minimum) + 1 : Math.Ceiling(node.Minimum);
                if (!double.IsPositiveInfinity(node.Maximum)) node.Maximum = node.MaximumExclusive ? Math.Ceiling(node.Maximum) - 1 : Math.Floor(node.Maximum);
                node.MinimumExclusive = node.MaximumExclusive = false;
            }
            if (!node.Meets(node.Minimum, node.Maximum)) throw new JsonSchemaException($"the bounds at {path} leave no {(node.Kind == Kind.Integer ? "integer" : "number")}");
            return node;
        }

        private static readonly string[] NumberKeywords = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"], StringKeywords = ["minLength", "maxLength"];

        private static void NoBounds(JsonElement s, string path, string what)
        {
            foreach (var name in NumberKeywords)
                if (s.TryGetProperty(name, out _)) throw new JsonSchemaException($"{name} at {path} applies to numbers, not {what}");
        }

        /// <summary>A number's or a string's keywords beside types that have none of those values would not be enforced:
        /// refused (beside a list of types they hold for the values of their kind).</summary>
        private static void KeywordsFitTypes(JsonElement s, IReadOnlyList<string> types, string path)
        {
            if (!types.Any(t => t is "number" or "integer")) NoBounds(s, path, string.Join(" or ", types) + " values");
            if (!types.Contains("string"))
                foreach (var name in (string[])[.. StringKeywords, "format"])
                    if (s.TryGetProperty(name, out _)) throw new JsonSchemaException($"{name} at {path} applies to strings, not {string.Join(" or ", types)} values");
        }

        private static int Count(JsonElement s, string name, int absent, string path)
        {
            if (!s.TryGetProperty(name, out var v)) return absent;
            return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) && n >= 0 ? n
                : throw new JsonSchemaException($"{name} at {path} must be a non-negative integer, got {v.GetRawText()}");
        }

        /// <summary>A name or enum value as the bytes between its quotes: one that needs escaping is refused.</summary>
        private static byte[] Plain(string text, string path)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            return IsPlainStringText(bytes) ? bytes
                : throw new JsonSchemaException($"\"{JsonEncodedText.Encode(text)}\" at {path} holds a quote, a backslash or a control character, which this server does not write");
        }

        private int Add(Node node)
        {
            Nodes.Add(node);
            return Nodes.Count - 1;
        }
    }
}
