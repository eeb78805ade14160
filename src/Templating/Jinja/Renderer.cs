using System.Text;

namespace ActorRing.Templating.Jinja;

/// <summary>
/// Walks the syntax tree once per render. Scoping follows Jinja: a for loop's body and a macro's body get
/// their own scope, so a <c>set</c> inside them does not leak out (templates carry state out of loops with
/// <c>namespace()</c>); <c>if</c> blocks share the scope around them.
/// </summary>
internal sealed class Renderer
{
    private enum Flow { Normal, Break, Continue }

    private sealed class Scope(Scope? parent)
    {
        private readonly Dictionary<string, object?> _variables = [];

        public bool TryGet(string name, out object? value)
        {
            for (var scope = this; scope is not null; scope = scope.Parent)
                if (scope._variables.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }

        public void Set(string name, object? value) => _variables[name] = value;
        public Scope? Parent { get; } = parent;
    }

    private const int MaxMacroDepth = 100;

    private Scope _scope;
    private int _macroDepth;

    private Renderer(Scope globals) => _scope = globals;

    public static string Render(IReadOnlyList<Node> template, IReadOnlyDictionary<string, object?> variables)
    {
        var globals = new Scope(null);
        foreach (var (name, value) in variables) globals.Set(name, value);
        var renderer = new Renderer(new Scope(globals));
        var output = new StringBuilder();
        renderer.Exec(template, output);
        return output.ToString();
    }

    private Flow Exec(IReadOnlyList<Node> nodes, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            var flow = Exec(node, output);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow Exec(Node node, StringBuilder output)
    {
        switch (node)
        {
            case TextNode text:
                output.Append(text.Text);
                return Flow.Normal;
            case OutputNode print:
                output.Append(Values.ToText(Eval(print.Value)));
                return Flow.Normal;
            case IfNode conditional:
                foreach (var (condition, body) in conditional.Branches)
                    if (Values.IsTruthy(Eval(condition))) return Exec(body, output);
                return Exec(conditional.Else, output);
            case ForNode loop:
                ExecFor(loop, output);
                return Flow.Normal;
            case SetNode set:
                ExecSet(set);
                return Flow.Normal;
            case MacroNode macro:
                _scope.Set(macro.Name, MakeMacro(macro));
                return Flow.Normal;
            case BlockNode block:
                return Exec(block.Body, output);
            case BreakNode:
                return Flow.Break;
            case ContinueNode:
                return Flow.Continue;
            default:
                throw new InvalidOperationException($"unknown node {node.GetType().Name}");
        }
    }

    private void ExecFor(ForNode loop, StringBuilder output)
    {
        var source = At(loop.Iterable.At, () => Values.Iterate(Eval(loop.Iterable)));
        var outer = _scope;
        try
        {
            List<object?> items = source;
            if (loop.Filter is not null)
            {
                items = [];
                foreach (var item in source)
                {
                    _scope = new Scope(outer);
                    Bind(loop, item);
                    if (Values.IsTruthy(Eval(loop.Filter))) items.Add(item);
                }
            }
            var context = new LoopContext(items);
            for (var i = 0; i < items.Count; i++)
            {
                _scope = new Scope(outer);
                context.Index0 = i;
                _scope.Set("loop", context);
                Bind(loop, items[i]);
                if (Exec(loop.Body, output) == Flow.Break) break;
            }
            _scope = outer;
            if (items.Count == 0) Exec(loop.Else, output);
        }
        finally
        {
            _scope = outer;
        }
    }

    private void Bind(ForNode loop, object? item)
    {
        if (loop.Targets.Count == 1)
        {
            _scope.Set(loop.Targets[0], item);
            return;
        }
        var parts = At(loop.At, () => Values.Iterate(item));
        if (parts.Count != loop.Targets.Count)
            throw Located(loop.At, $"cannot unpack {parts.Count} values into {loop.Targets.Count} loop variables");
        for (var i = 0; i < parts.Count; i++) _scope.Set(loop.Targets[i], parts[i]);
    }

    private void ExecSet(SetNode set)
    {
        object? value;
        if (set.Body is not null)
        {
            var captured = new StringBuilder();
            Exec(set.Body, captured);
            value = captured.ToString();
        }
        else value = Eval(set.Value!);

        if (set.Attribute is not null)
        {
            _scope.TryGet(set.Targets[0], out var target);
            if (target is not Namespace ns)
                throw Located(set.At, $"cannot assign attribute on non-namespace object: '{set.Targets[0]}' is a {Values.TypeName(target)}; make it with namespace() to set '{set.Attribute}' on it");
            ns.Attributes[set.Attribute] = value;
            return;
        }
        if (set.Targets.Count == 1)
        {
            _scope.Set(set.Targets[0], value);
            return;
        }
        var parts = At(set.At, () => Values.Iterate(value));
        if (parts.Count != set.Targets.Count)
            throw Located(set.At, $"cannot unpack {parts.Count} values into {set.Targets.Count} variables");
        for (var i = 0; i < parts.Count; i++) _scope.Set(set.Targets[i], parts[i]);
    }

    private Callable MakeMacro(MacroNode macro)
    {
        var definedIn = _scope;
        return new Callable(macro.Name, args =>
        {
            // .NET cannot catch a stack overflow, so a runaway recursive macro must stop well before one.
            if (_macroDepth >= MaxMacroDepth)
                throw new JinjaError($"macro '{macro.Name}' calls itself more than {MaxMacroDepth} levels deep");
            _macroDepth++;
            var caller = _scope;
            _scope = new Scope(definedIn);
            try
            {
                for (var i = 0; i < macro.Parameters.Count; i++)
                {
                    var (name, defaultValue) = macro.Parameters[i];
                    _scope.Set(name, args.Has(i, name) ? args.Get(i, name)
                        : defaultValue is not null ? Eval(defaultValue) : new Undefined($"'{name}' is undefined"));
                }
                if (args.Positional.Count > macro.Parameters.Count)
                    throw new JinjaError($"macro '{macro.Name}' takes {macro.Parameters.Count} arguments, got {args.Positional.Count}");
                var output = new StringBuilder();
                Exec(macro.Body, output);
                return output.ToString();
            }
            finally
            {
                _scope = caller;
                _macroDepth--;
            }
        });
    }

    private static ChatTemplateException Located(Position at, string message) => new($"chat template error at {at}: {message}");

    /// <summary>Runs an operation, giving a position-less error the position of the expression.</summary>
    private static T At<T>(Position at, Func<T> operation)
    {
        try
        {
            return operation();
        }
        catch (JinjaError e)
        {
            throw Located(at, e.Message);
        }
    }

    private object? Eval(Expr expr)
    {
        switch (expr)
        {
            case LiteralExpr literal:
                return literal.Value;
            case NameExpr name:
                return _scope.TryGet(name.Name, out var value) ? value : new Undefined($"'{name.Name}' is undefined");
            case ListExpr { IsTuple: true } tuple:
                return new TupleValue(tuple.Items.Select(Eval));
            case ListExpr list:
                return list.Items.Select(Eval).ToList();
            case DictExpr dict:
                var result = new Dictionary<string, object?>();
                foreach (var (keyExpr, valueExpr) in dict.Items)
                {
                    var key = Eval(keyExpr);
                    result[key as string ?? throw Located(keyExpr.At, $"dictionary keys must be strings, got {Values.TypeName(key)}")] = Eval(valueExpr);
                }
                return result;
            case AttributeExpr attribute:
                {
                    var target = Eval(attribute.Target);
                    return At(attribute.At, () => Access.Attribute(target, attribute.Name));
                }
            case IndexExpr index:
                {
                    var target = Eval(index.Target);
                    var key = Eval(index.Index);
                    return At(index.At, () => Access.Item(target, key));
                }
            case SliceExpr slice:
                {
                    var target = Eval(slice.Target);
                    var start = slice.Start is null ? null : Eval(slice.Start);
                    var stop = slice.Stop is null ? null : Eval(slice.Stop);
                    var step = slice.Step is null ? null : Eval(slice.Step);
                    return At(slice.At, () => Access.Slice(target, start, stop, step));
                }
            case CallExpr call:
                return EvalCall(call);
            case FilterExpr filter:
                {
                    var input = Eval(filter.Value);
                    var args = EvalArguments(filter.Arguments, filter.Name);
                    return At(filter.At, () => Filters.Apply(filter.Name, input, args));
                }
            case TestExpr test:
                {
                    var input = Eval(test.Value);
                    var args = EvalArguments(test.Arguments, test.Name);
                    var passed = At(test.At, () => Filters.Test(test.Name, input, args));
                    return passed != test.Negated;
                }
            case UnaryExpr unary:
                {
                    var operand = Eval(unary.Operand);
                    return At(unary.At, () => Operators.Unary(unary.Operator, operand));
                }
            case BinaryExpr { Operator: "and" } and:
                {
                    var left = Eval(and.Left);
                    return Values.IsTruthy(left) ? Eval(and.Right) : left;
                }
            case BinaryExpr { Operator: "or" } or:
                {
                    var left = Eval(or.Left);
                    return Values.IsTruthy(left) ? left : Eval(or.Right);
                }
            case BinaryExpr binary:
                {
                    var left = Eval(binary.Left);
                    var right = Eval(binary.Right);
                    return At(binary.At, () => Operators.Binary(binary.Operator, left, right));
                }
            case CompareExpr compare:
                {
                    var left = Eval(compare.First);
                    foreach (var (op, operandExpr) in compare.Rest)
                    {
                        var right = Eval(operandExpr);
                        if (!At(operandExpr.At, () => Operators.Compare(op, left, right))) return false;
                        left = right;
                    }
                    return true;
                }
            case ConditionalExpr conditional:
                return Values.IsTruthy(Eval(conditional.Condition)) ? Eval(conditional.Then)
                    : conditional.Else is not null ? Eval(conditional.Else) : new Undefined("the conditional expression had no else branch");
            default:
                throw new InvalidOperationException($"unknown expression {expr.GetType().Name}");
        }
    }

    private object? EvalCall(CallExpr call)
    {
        // `x.method(...)` on a string, list or dict calls the Python method even where a dict has a key of that name.
        if (call.Callee is AttributeExpr method)
        {
            var target = Eval(method.Target);
            if (Methods.Has(target, method.Name))
            {
                var methodArgs = EvalArguments(call.Arguments, method.Name);
                return At(call.At, () => Methods.Call(target, method.Name, methodArgs));
            }
            var attribute = At(method.At, () => Access.Attribute(target, method.Name));
            return Invoke(call, attribute, Describe(call.Callee));
        }
        return Invoke(call, Eval(call.Callee), Describe(call.Callee));
    }

    private object? Invoke(CallExpr call, object? callee, string name)
    {
        var args = EvalArguments(call.Arguments, name);
        if (callee is Undefined undefined)
            throw Located(call.At, undefined.Description);
        if (callee is not Callable function)
            throw Located(call.At, $"'{name}' is a {Values.TypeName(callee)}, not a function");
        try
        {
            return function.Invoke(args);
        }
        catch (JinjaError e)
        {
            throw Located(call.At, e.Message);
        }
    }

    private static string Describe(Expr expr) => expr switch
    {
        NameExpr name => name.Name,
        AttributeExpr attribute => Describe(attribute.Target) + "." + attribute.Name,
        _ => "expression",
    };

    private CallArguments EvalArguments(Arguments arguments, string callee) =>
        new(arguments.Positional.Select(Eval).ToList(),
            arguments.Named.ToDictionary(named => named.Name, named => Eval(named.Value)), callee);
}
