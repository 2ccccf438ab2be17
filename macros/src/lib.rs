//! The `#[measure]` attribute of runmetrics. Use it as `runmetrics::measure`;
//! this crate is an implementation detail, pinned by runmetrics.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{Error, Ident, ItemFn, LitBool, LitInt, LitStr, Token};

/// Times every call of the function; see `runmetrics::measure` for the docs.
#[proc_macro_attribute]
pub fn measure(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(args as Args);
    let function = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => {
            return Error::new(
                e.span(),
                "#[measure] goes on a function (fn, async fn or method)",
            )
            .to_compile_error()
            .into()
        }
    };
    expand(args, function)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

#[derive(Default)]
struct Args {
    name: Option<LitStr>,
    module: Option<LitStr>,
    resources: Option<LitBool>,
    fenced: Option<LitBool>,
    sample: Option<LitInt>,
}

/// The greatest `sample = n` (runmetrics' `Config::time_one_in` range).
const MAX_SAMPLE: u32 = 1 << 15;

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Args> {
        let mut args = Args::default();
        if input.peek(LitStr) {
            args.name = Some(input.parse()?);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        while !input.is_empty() {
            let key: Ident = input.parse().map_err(|e| {
                Error::new(
                    e.span(),
                    "expected `name = \"...\"`, `module = \"...\"`, `resources = true`, `fenced = true` or `sample = 64`",
                )
            })?;
            input.parse::<Token![=]>()?;
            match key.to_string().as_str() {
                "name" => set(&mut args.name, &key, input.parse()?)?,
                "module" => set(&mut args.module, &key, input.parse()?)?,
                "resources" => {
                    let value = input.parse().map_err(|e| {
                        Error::new(e.span(), "`resources` takes `true` or `false`")
                    })?;
                    set(&mut args.resources, &key, value)?
                }
                "fenced" => {
                    let value = input.parse().map_err(|e| {
                        Error::new(e.span(), "`fenced` takes `true` or `false`")
                    })?;
                    set(&mut args.fenced, &key, value)?
                }
                "sample" => {
                    let value = input.parse().map_err(|e| {
                        Error::new(e.span(), "`sample` takes an integer from 1 to 32768")
                    })?;
                    set(&mut args.sample, &key, value)?
                }
                other => {
                    return Err(Error::new(
                        key.span(),
                        format!(
                            "unknown #[measure] argument `{other}`; expected `name`, `module`, `resources`, `fenced` or `sample`"
                        ),
                    ))
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

fn set<T>(slot: &mut Option<T>, key: &Ident, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(Error::new(
            key.span(),
            format!("`{key}` is given twice in #[measure]"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

fn expand(args: Args, function: ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    if let Some(constness) = &function.sig.constness {
        return Err(Error::new_spanned(
            constness,
            "#[measure] cannot time a const fn: it reads the clock at run time",
        ));
    }
    for lit in [&args.name, &args.module].into_iter().flatten() {
        if lit.value().is_empty() {
            return Err(Error::new(
                lit.span(),
                "names in #[measure] must not be empty",
            ));
        }
    }
    let name = args
        .name
        .unwrap_or_else(|| LitStr::new(&function.sig.ident.to_string(), Span::call_site()));
    let module = match args.module {
        Some(m) => quote!(#m),
        None => quote!(::core::module_path!()),
    };
    let fenced = args.fenced.is_some_and(|f| f.value);
    let resources = args.resources.is_some_and(|r| r.value);
    let sample = match &args.sample {
        None => None,
        Some(lit) => {
            let n = lit
                .base10_parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_SAMPLE).contains(n))
                .ok_or_else(|| {
                    Error::new(lit.span(), "`sample` takes an integer from 1 to 32768")
                })?;
            if resources {
                return Err(Error::new(
                    lit.span(),
                    "`sample` times one call in n: it does not go with `resources`",
                ));
            }
            Some(n)
        }
    };
    let at = match (fenced, sample) {
        (true, Some(n)) => quote!(at_fenced_sampled(&__RUNMETRICS_SITE, #n)),
        (true, None) => quote!(at_fenced(&__RUNMETRICS_SITE)),
        (false, Some(n)) => quote!(at_sampled(&__RUNMETRICS_SITE, #n)),
        (false, None) => quote!(at(&__RUNMETRICS_SITE)),
    };
    let start = if resources {
        quote!(#at.with_resources())
    } else {
        quote!(#at)
    };
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let stmts = &block.stmts;
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let __runmetrics_guard = {
                static __RUNMETRICS_SITE: ::runmetrics::__private::Site =
                    ::runmetrics::__private::Site::function(#name, #module);
                ::runmetrics::FunctionTimer::#start
            };
            #(#stmts)*
        }
    })
}
