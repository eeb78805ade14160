namespace ActorRing.Templating.Jinja;

/// <summary>
/// Recursive descent over the lexer's tokens, with Jinja's precedence: conditional, or, and, not,
/// comparisons and <c>in</c>, <c>+ -</c>, <c>~</c>, <c>* / // %</c>, <c>**</c>, unary minus, then
/// primaries with their postfixes (attribute, index, slice, call) and filters and tests, which bind tighter
/// than any operator, so <c>'a' + x | trim</c> trims x alone.
/// </summary>
internal sealed class Parser
{
    private readonly List<Token> _tokens;
    private int _pos;

    private Parser(List<Token> tokens) => _tokens = tokens;

    public static IReadOnlyList<Node> Parse(string source)
    {
        var parser = new Parser(Lexer.Tokenize(source));
        var body = parser.ParseBody([], out _);
        return body;
    }

    private Token Current => _tokens[_pos];
    private Token Peek(int ahead = 1) => _tokens[Math.Min(_pos + ahead, _tokens.Count - 1)];
    private Token Next() => _tokens[_pos++];

    private static ChatTemplateException Error(Position at, string message) => new($"chat template syntax error at {at}: {message}");

    private static string Describe(Token token) => token.Kind switch
    {
        TokenKind.End => "end of template",
        TokenKind.BlockEnd => "end of tag '%}'",
        TokenKind.VariableEnd => "end of tag '}}'",
        TokenKind.String => "a string",
        TokenKind.Text => "text",
        _ => $"'{token.Value}'",
    };

    private Token Expect(TokenKind kind, string? value = null)
    {
        var token = Current;
        if (token.Kind != kind || (value is not null && token.Value != value))
        {
            var wanted = value is not null ? $"'{value}'" : kind switch
            {
                TokenKind.Name => "a name",
                TokenKind.BlockEnd => "'%}'",
                TokenKind.VariableEnd => "'}}'",
                _ => kind.ToString(),
            };
            throw Error(token.At, $"expected {wanted} but found {Describe(token)}");
        }
        _pos++;
        return token;
    }

    /// <summary>Parses nodes until a block tag whose keyword is in <paramref name="stops"/> (left unconsumed, after its BlockBegin).</summary>
    private List<Node> ParseBody(string[] stops, out string? stoppedAt)
    {
        var nodes = new List<Node>();
        while (true)
        {
            var token = Current;
            switch (token.Kind)
            {
                case TokenKind.End:
                    if (stops.Length > 0)
                        throw Error(token.At, $"unexpected end of template; expected {string.Join(" or ", stops.Select(s => $"'{{% {s} %}}'"))}");
                    stoppedAt = null;
                    return nodes;
                case TokenKind.Text:
                    _pos++;
                    nodes.Add(new TextNode(token.At, token.Value));
                    break;
                case TokenKind.VariableBegin:
                    _pos++;
                    nodes.Add(new OutputNode(token.At, ParseExpression()));
                    Expect(TokenKind.VariableEnd);
                    break;
                case TokenKind.BlockBegin:
                    var keyword = Peek();
                    if (keyword.Kind == TokenKind.Name && stops.Contains(keyword.Value))
                    {
                        _pos += 2;
                        stoppedAt = keyword.Value;
                        return nodes;
                    }
                    _pos++;
                    nodes.Add(ParseStatement(token.At));
                    break;
                default:
                    throw Error(token.At, $"unexpected {Describe(token)}");
            }
        }
    }

    private Node ParseStatement(Position at)
    {
        var keyword = Expect(TokenKind.Name);
        switch (keyword.Value)
        {
            case "if": return ParseIf(at);
            case "for": return ParseFor(at);
            case "set": return ParseSet(at);
            case "macro": return ParseMacro(at);
            case "generation":
                Expect(TokenKind.BlockEnd);
                var body = ParseBody(["endgeneration"], out _);
                Expect(TokenKind.BlockEnd);
                return new BlockNode(at, body);
            case "break":
                Expect(TokenKind.BlockEnd);
                return new BreakNode(at);
            case "continue":
                Expect(TokenKind.BlockEnd);
                return new ContinueNode(at);
            case "elif" or "else" or "endif" or "endfor" or "endset" or "endmacro" or "endgeneration" or "endraw":
                throw Error(keyword.At, $"'{keyword.Value}' without a matching opening tag");
            default:
                throw Error(keyword.At, $"unknown tag '{keyword.Value}'; this engine supports if, for, set, macro, raw, generation, break and continue");
        }
    }

    private IfNode ParseIf(Position at)
    {
        var branches = new List<(Expr, IReadOnlyList<Node>)>();
        var condition = ParseExpression();
        while (true)
        {
            Expect(TokenKind.BlockEnd);
            var body = ParseBody(["elif", "else", "endif"], out var stop);
            branches.Add((condition, body));
            if (stop == "elif")
            {
                condition = ParseExpression();
                continue;
            }
            IReadOnlyList<Node> elseBody = [];
            if (stop == "else")
            {
                Expect(TokenKind.BlockEnd);
                elseBody = ParseBody(["endif"], out _);
            }
            Expect(TokenKind.BlockEnd);
            return new IfNode(at, branches, elseBody);
        }
    }

    private ForNode ParseFor(Position at)
    {
        var targets = new List<string> { Expect(TokenKind.Name).Value };
        while (Current.IsOperator(","))
        {
            _pos++;
            targets.Add(Expect(TokenKind.Name).Value);
        }
        Expect(TokenKind.Name, "in");
        // The iterable stops before a trailing 'if' clause, so it is parsed without the conditional form.
        var iterable = ParseOr();
        Expr? filter = null;
        if (Current.IsName("if"))
        {
            _pos++;
            filter = ParseExpression();
        }
        if (Current.IsName("recursive")) throw Error(Current.At, "recursive loops are not supported");
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(["else", "endfor"], out var stop);
        IReadOnlyList<Node> elseBody = [];
        if (stop == "else")
        {
            Expect(TokenKind.BlockEnd);
            elseBody = ParseBody(["endfor"], out _);
        }
        Expect(TokenKind.BlockEnd);
        return new ForNode(at, targets, iterable, filter, body, elseBody);
    }

    private SetNode ParseSet(Position at)
    {
        var first = Expect(TokenKind.Name).Value;
        if (Current.IsOperator("."))
        {
            _pos++;
            var attribute = Expect(TokenKind.Name).Value;
            Expect(TokenKind.Operator, "=");
            var value = ParseTupleOrExpression();
            Expect(TokenKind.BlockEnd);
            return new SetNode(at, [first], attribute, value, null);
        }
        var targets = new List<string> { first };
        while (Current.IsOperator(","))
        {
            _pos++;
            targets.Add(Expect(TokenKind.Name).Value);
        }
        if (Current.Kind == TokenKind.BlockEnd && targets.Count == 1)
        {
            _pos++;
            var body = ParseBody(["endset"], out _);
            Expect(TokenKind.BlockEnd);
            return new SetNode(at, targets, null, null, body);
        }
        Expect(TokenKind.Operator, "=");
        var assigned = ParseTupleOrExpression();
        Expect(TokenKind.BlockEnd);
        return new SetNode(at, targets, null, assigned, null);
    }

    private MacroNode ParseMacro(Position at)
    {
        var name = Expect(TokenKind.Name).Value;
        Expect(TokenKind.Operator, "(");
        var parameters = new List<(string, Expr?)>();
        while (!Current.IsOperator(")"))
        {
            if (parameters.Count > 0) Expect(TokenKind.Operator, ",");
            var parameter = Expect(TokenKind.Name).Value;
            Expr? defaultValue = null;
            if (Current.IsOperator("="))
            {
                _pos++;
                defaultValue = ParseExpression();
            }
            parameters.Add((parameter, defaultValue));
        }
        _pos++;
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(["endmacro"], out _);
        if (Current.Kind == TokenKind.Name) _pos++; // {% endmacro name %}
        Expect(TokenKind.BlockEnd);
        return new MacroNode(at, name, parameters, body);
    }

    /// <summary><c>a, b</c> without brackets is a tuple, as in <c>{% set x = 1, 2 %}</c>.</summary>
    private Expr ParseTupleOrExpression()
    {
        var first = ParseExpression();
        if (!Current.IsOperator(",")) return first;
        var items = new List<Expr> { first };
        while (Current.IsOperator(","))
        {
            _pos++;
            items.Add(ParseExpression());
        }
        return new ListExpr(first.At, items, IsTuple: true);
    }

    private Expr ParseExpression()
    {
        var value = ParseOr();
        if (!Current.IsName("if")) return value;
        var at = Next().At;
        var condition = ParseOr();
        Expr? otherwise = null;
        if (Current.IsName("else"))
        {
            _pos++;
            otherwise = ParseExpression();
        }
        return new ConditionalExpr(at, condition, value, otherwise);
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Current.IsName("or"))
        {
            var at = Next().At;
            left = new BinaryExpr(at, "or", left, ParseAnd());
        }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Current.IsName("and"))
        {
            var at = Next().At;
            left = new BinaryExpr(at, "and", left, ParseNot());
        }
        return left;
    }

    private Expr ParseNot()
    {
        if (!Current.IsName("not")) return ParseCompare();
        var at = Next().At;
        return new UnaryExpr(at, "not", ParseNot());
    }

    private Expr ParseCompare()
    {
        var first = ParseAdditive();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            var token = Current;
            if (token.Kind == TokenKind.Operator && token.Value is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                _pos++;
                rest.Add((token.Value, ParseAdditive()));
            }
            else if (token.IsName("in"))
            {
                _pos++;
                rest.Add(("in", ParseAdditive()));
            }
            else if (token.IsName("not") && Peek().IsName("in"))
            {
                _pos += 2;
                rest.Add(("not in", ParseAdditive()));
            }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first.At, first, rest);
    }

    private Expr ParseAdditive()
    {
        var left = ParseConcat();
        while (Current.IsOperator("+") || Current.IsOperator("-"))
        {
            var op = Next();
            left = new BinaryExpr(op.At, op.Value, left, ParseConcat());
        }
        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMultiplicative();
        while (Current.IsOperator("~"))
        {
            var op = Next();
            left = new BinaryExpr(op.At, "~", left, ParseMultiplicative());
        }
        return left;
    }

    private Expr ParseMultiplicative()
    {
        var left = ParsePower();
        while (Current.Kind == TokenKind.Operator && Current.Value is "*" or "/" or "//" or "%")
        {
            var op = Next();
            left = new BinaryExpr(op.At, op.Value, left, ParsePower());
        }
        return left;
    }

    private Expr ParsePower()
    {
        var left = ParseUnary(withFilters: true);
        while (Current.IsOperator("**"))
        {
            var op = Next();
            left = new BinaryExpr(op.At, "**", left, ParseUnary(withFilters: true));
        }
        return left;
    }

    private Expr ParseUnary(bool withFilters)
    {
        Expr value;
        if (Current.IsOperator("-") || Current.IsOperator("+"))
        {
            var op = Next();
            value = new UnaryExpr(op.At, op.Value, ParseUnary(withFilters: false));
        }
        else
        {
            value = ParsePostfix(ParsePrimary());
        }
        return withFilters ? ParseFiltersAndTests(value) : value;
    }

    /// <summary>Bracket nesting deeper than this is refused: .NET cannot catch the stack overflow it would cause.</summary>
    private const int MaxNesting = 100;
    private int _nesting;

    private Expr ParsePrimary()
    {
        var token = Next();
        if (token.Kind == TokenKind.Operator && token.Value is "(" or "[" or "{")
        {
            if (++_nesting > MaxNesting) throw Error(token.At, $"brackets nest more than {MaxNesting} deep");
            try
            {
                return ParseBracketed(token);
            }
            finally
            {
                _nesting--;
            }
        }
        return ParseAtom(token);
    }

    private Expr ParseAtom(Token token)
    {
        switch (token.Kind)
        {
            case TokenKind.String:
                var text = (string)token.Literal!;
                // Adjacent string literals join, as in Python.
                while (Current.Kind == TokenKind.String) text += (string)Next().Literal!;
                return new LiteralExpr(token.At, text);
            case TokenKind.Integer:
            case TokenKind.Float:
                return new LiteralExpr(token.At, token.Literal);
            case TokenKind.Name:
                return token.Value switch
                {
                    "true" or "True" => new LiteralExpr(token.At, true),
                    "false" or "False" => new LiteralExpr(token.At, false),
                    "none" or "None" => new LiteralExpr(token.At, null),
                    _ => new NameExpr(token.At, token.Value),
                };
            default:
                throw Error(token.At, $"expected an expression but found {Describe(token)}");
        }
    }

    private Expr ParseBracketed(Token token)
    {
        switch (token.Value)
        {
            case "(":
                if (Current.IsOperator(")"))
                {
                    _pos++;
                    return new ListExpr(token.At, [], IsTuple: true);
                }
                var inner = ParseTupleOrExpression();
                Expect(TokenKind.Operator, ")");
                return inner;
            case "[":
                var items = new List<Expr>();
                while (!Current.IsOperator("]"))
                {
                    if (items.Count > 0)
                    {
                        Expect(TokenKind.Operator, ",");
                        if (Current.IsOperator("]")) break;
                    }
                    items.Add(ParseExpression());
                }
                _pos++;
                return new ListExpr(token.At, items);
            case "{":
                var pairs = new List<(Expr, Expr)>();
                while (!Current.IsOperator("}"))
                {
                    if (pairs.Count > 0)
                    {
                        Expect(TokenKind.Operator, ",");
                        if (Current.IsOperator("}")) break;
                    }
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    pairs.Add((key, ParseExpression()));
                }
                _pos++;
                return new DictExpr(token.At, pairs);
            default:
                throw new InvalidOperationException($"not an opening bracket: {token.Value}");
        }
    }

    private Expr ParsePostfix(Expr value)
    {
        while (true)
        {
            var token = Current;
            if (token.IsOperator("."))
            {
                _pos++;
                var name = Current.Kind == TokenKind.Integer ? Next().Value : Expect(TokenKind.Name).Value;
                value = new AttributeExpr(token.At, value, name);
            }
            else if (token.IsOperator("["))
            {
                _pos++;
                value = ParseSubscript(token.At, value);
            }
            else if (token.IsOperator("("))
            {
                _pos++;
                value = new CallExpr(token.At, value, ParseArguments());
            }
            else return value;
        }
    }

    private Expr ParseSubscript(Position at, Expr target)
    {
        Expr? start = null, stop = null, step = null;
        if (!Current.IsOperator(":")) start = ParseExpression();
        if (!Current.IsOperator(":"))
        {
            Expect(TokenKind.Operator, "]");
            return new IndexExpr(at, target, start!);
        }
        _pos++;
        if (!Current.IsOperator(":") && !Current.IsOperator("]")) stop = ParseExpression();
        if (Current.IsOperator(":"))
        {
            _pos++;
            if (!Current.IsOperator("]")) step = ParseExpression();
        }
        Expect(TokenKind.Operator, "]");
        return new SliceExpr(at, target, start, stop, step);
    }

    /// <summary>After '(' : positional and name=value arguments up to ')'.</summary>
    private Arguments ParseArguments()
    {
        var positional = new List<Expr>();
        var named = new List<(string, Expr)>();
        while (!Current.IsOperator(")"))
        {
            if (positional.Count + named.Count > 0)
            {
                Expect(TokenKind.Operator, ",");
                if (Current.IsOperator(")")) break;
            }
            if (Current.Kind == TokenKind.Name && Peek().IsOperator("="))
            {
                var name = Next().Value;
                _pos++;
                named.Add((name, ParseExpression()));
            }
            else
            {
                if (named.Count > 0) throw Error(Current.At, "a positional argument cannot follow a named one");
                positional.Add(ParseExpression());
            }
        }
        _pos++;
        return new Arguments(positional, named);
    }

    private Expr ParseFiltersAndTests(Expr value)
    {
        while (true)
        {
            var token = Current;
            if (token.IsOperator("|"))
            {
                _pos++;
                var name = ParseDottedName();
                var arguments = Arguments.None;
                if (Current.IsOperator("("))
                {
                    _pos++;
                    arguments = ParseArguments();
                }
                value = new FilterExpr(token.At, value, name, arguments);
            }
            else if (token.IsName("is"))
            {
                _pos++;
                var negated = false;
                if (Current.IsName("not"))
                {
                    _pos++;
                    negated = true;
                }
                var name = ParseDottedName();
                var arguments = Arguments.None;
                if (Current.IsOperator("("))
                {
                    _pos++;
                    arguments = ParseArguments();
                }
                else if (StartsBareTestArgument(Current))
                {
                    // `x is divisibleby 3`, `x is sameas false`: one argument without parentheses.
                    arguments = new Arguments([ParsePostfix(ParsePrimary())], []);
                }
                value = new TestExpr(token.At, value, name, negated, arguments);
            }
            else if (token.IsOperator("(") && value is FilterExpr)
            {
                _pos++;
                value = new CallExpr(token.At, value, ParseArguments());
            }
            else return value;
        }
    }

    private static bool StartsBareTestArgument(Token token) =>
        token.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
        || (token.Kind == TokenKind.Name && token.Value is not ("and" or "or" or "else" or "if" or "in" or "not" or "is"))
        || token.IsOperator("[") || token.IsOperator("{");

    private string ParseDottedName()
    {
        var name = Expect(TokenKind.Name).Value;
        while (Current.IsOperator(".") && Peek().Kind == TokenKind.Name)
        {
            _pos++;
            name += "." + Next().Value;
        }
        return name;
    }
}
